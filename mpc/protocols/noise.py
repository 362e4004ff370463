"""Differentially private noise, drawn by the parties and added inside MPC.

Every party draws noise for every cell and inputs it secretly, like its table; only
value + (sum of the parties' noise) is ever opened.

Sampling uses integers only. A sampler built on floating point leaks through the gaps
and rounding of the floats it produces (Mironov 2012), and fractional negative binomials
(the old way of splitting noise into shares) cannot be sampled exactly at all. Here every
random choice is a uniform integer from ``rng.randbelow(n)``, every probability a ratio of
integers, following Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for
Differential Privacy" (CKS):

- ``bernoulli_exp``: Bernoulli(exp(-gamma)) for rational gamma (CKS Algorithm 1).
- ``sample_discrete_laplace``: P(x) ~ exp(-|x| / scale) for rational scale (Algorithm 2),
  which with scale = sensitivity / epsilon is epsilon-DP.
- ``sample_discrete_gaussian``: P(x) ~ exp(-x^2 / (2 sigma^2)) for rational sigma^2
  (Algorithm 3), which is rho-zCDP with rho = sensitivity^2 / (2 sigma^2) (L2 sensitivity),
  hence (epsilon, delta)-DP for epsilon = rho + 2 sqrt(rho log(1/delta)).

Calibration is done once, as exact fractions, and every rounding step makes the noise
larger, never smaller. The randomness is ``SecureIntegers`` (the operating system's CSPRNG)
unless a test passes a seeded source.

Every party draws the complete mechanism. The released noise is the sum of N independent
full draws, so the guarantee holds against the recipient or coordinator together with any
N-1 colluding parties: the one honest party's draw alone makes the release DP, and adding
the others' independent noise is post-processing. The price is sqrt(N) times the standard
deviation of a single draw; ``interval_half_width`` states the actual spread.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction
from random import Random
from typing import Protocol

import numpy as np

from mpc.config.spec import Noise

# Calibrated scales and variances are rounded up to this grid when their exact value has a
# larger denominator (keeps the integers small; only ever adds noise).
_GRID = 10**6
# Each reported distribution leaves less than this much mass outside its support.
_TAIL = 1e-12


class IntegerSource(Protocol):
    def randbelow(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        ...


class SecureIntegers:
    """Uniform integers from the operating system's CSPRNG: the production source."""

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


class SeededIntegers:
    """Reproducible uniform integers from a seeded Mersenne Twister. Tests only: it is
    predictable, so noise drawn from it protects nothing."""

    def __init__(self, seed: int) -> None:
        self._random = Random(seed)

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)


def noise_source(seed: int | None = None) -> IntegerSource:
    """The CSPRNG, or (tests only) a seeded source when `seed` is given."""
    return SecureIntegers() if seed is None else SeededIntegers(seed)


# ---- exact samplers ---------------------------------------------------------------------

def _bernoulli_exp_unit(num: int, den: int, rng: IntegerSource) -> bool:
    """Bernoulli(exp(-num/den)) for 0 <= num <= den: the series algorithm. Draw
    A_k ~ Bernoulli(gamma / k) for k = 1, 2, ... until one is 0; answer whether that k
    is odd."""
    k = 1
    while rng.randbelow(den * k) < num:
        k += 1
    return k % 2 == 1


def _bernoulli_exp(num: int, den: int, rng: IntegerSource) -> bool:
    """Bernoulli(exp(-num/den)) for num >= 0, den >= 1: exp(-gamma) is exp(-1) to the
    power floor(gamma) times exp(-remainder); stop at the first failed factor."""
    whole, rest = divmod(num, den)
    for _ in range(whole):
        if not _bernoulli_exp_unit(1, 1, rng):
            return False
    return _bernoulli_exp_unit(rest, den, rng)


def bernoulli_exp(gamma: Fraction, rng: IntegerSource | None = None) -> bool:
    """True with probability exactly exp(-gamma), for rational gamma >= 0 (CKS Algorithm 1)."""
    gamma = Fraction(gamma)
    if gamma < 0:
        raise ValueError("gamma must be >= 0")
    return _bernoulli_exp(gamma.numerator, gamma.denominator,
                          rng if rng is not None else SecureIntegers())


def _discrete_laplace(t: int, s: int, rng: IntegerSource) -> int:
    """One draw with P(x) ~ exp(-|x| s / t), i.e. scale t/s (CKS Algorithm 2)."""
    while True:
        u = rng.randbelow(t)
        if not _bernoulli_exp(u, t, rng):
            continue
        v = 0
        while _bernoulli_exp_unit(1, 1, rng):
            v += 1
        # u + t v is geometric with P(x) ~ exp(-x / t); dividing by s makes the ratio
        # exp(-s / t).
        y = (u + t * v) // s
        negative = rng.randbelow(2) == 1
        if negative and y == 0:
            continue  # otherwise 0 would be counted twice
        return -y if negative else y


def _to_int64(values: list[int]) -> np.ndarray:
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError as err:
        raise ValueError("noise outside the int64 range: scale far too large") from err


def sample_discrete_laplace(scale: Fraction, size: int,
                            rng: IntegerSource | None = None) -> np.ndarray:
    """`size` independent draws with P(x) ~ exp(-|x| / scale), exactly, for rational
    scale > 0."""
    scale = Fraction(scale)
    if scale <= 0:
        raise ValueError("the Laplace scale must be > 0")
    rng = rng if rng is not None else SecureIntegers()
    t, s = scale.numerator, scale.denominator
    return _to_int64([_discrete_laplace(t, s, rng) for _ in range(size)])


def _discrete_gaussian(n: int, d: int, t: int, rng: IntegerSource) -> int:
    """One draw with P(x) ~ exp(-x^2 / (2 sigma^2)), sigma^2 = n/d (CKS Algorithm 3):
    propose a discrete Laplace of scale t, accept with chance
    exp(-(|y| - sigma^2/t)^2 / (2 sigma^2)) = exp(-(|y| d t - n)^2 / (2 n d t^2))."""
    den = 2 * n * d * t * t
    while True:
        y = _discrete_laplace(t, 1, rng)
        if _bernoulli_exp((abs(y) * d * t - n) ** 2, den, rng):
            return y


def sample_discrete_gaussian(sigma2: Fraction, size: int,
                             rng: IntegerSource | None = None) -> np.ndarray:
    """`size` independent draws with P(x) ~ exp(-x^2 / (2 sigma2)), exactly, for rational
    sigma2 > 0."""
    sigma2 = Fraction(sigma2)
    if sigma2 <= 0:
        raise ValueError("sigma^2 must be > 0")
    rng = rng if rng is not None else SecureIntegers()
    n, d = sigma2.numerator, sigma2.denominator
    t = math.isqrt(n * d) // d + 1  # floor(sigma) + 1, computed exactly
    return _to_int64([_discrete_gaussian(n, d, t, rng) for _ in range(size)])


# ---- calibration -------------------------------------------------------------------------

def _round_up(value: Fraction) -> Fraction:
    """`value` itself if its denominator is small, else the next multiple of 1/_GRID."""
    if value.denominator <= _GRID:
        return value
    return Fraction(math.ceil(value * _GRID), _GRID)


def laplace_scale(noise: Noise) -> Fraction:
    """sensitivity / epsilon as a fraction, never below the real quotient: epsilon is taken
    as the smaller of the float's exact value and its shortest decimal (the number as
    written in the spec), then the scale is rounded up."""
    if not noise.epsilon > 0:
        raise ValueError("epsilon must be > 0")
    epsilon = min(Fraction(noise.epsilon), Fraction(repr(float(noise.epsilon))))
    return _round_up(noise.sensitivity / epsilon)


def gaussian_sigma2_float(noise: Noise) -> float:
    """sigma^2 for which DG(sigma^2) is (epsilon, delta)-DP through rho-zCDP, in floats:
    rho = (sqrt(log(1/delta) + epsilon) - sqrt(log(1/delta)))^2, written without the
    cancellation, and sigma^2 = sensitivity^2 / (2 rho)."""
    if not noise.epsilon > 0 or not 0 < noise.delta < 1:
        raise ValueError("the Gaussian needs epsilon > 0 and 0 < delta < 1")
    log_inv_delta = math.log(1 / noise.delta)
    root = noise.epsilon / (math.sqrt(log_inv_delta + noise.epsilon) + math.sqrt(log_inv_delta))
    rho = root * root
    return noise.sensitivity**2 / (2 * rho)


def gaussian_sigma2(noise: Noise) -> Fraction:
    """The float calibration as a fraction, rounded up (with a relative margin far above
    the float error) so that rounding only ever adds noise."""
    return _round_up(Fraction(gaussian_sigma2_float(noise)) * (1 + Fraction(1, 10**9)))


def noise_share(noise: Noise, world_size: int, cells: int,
                rng: IntegerSource | None = None) -> np.ndarray:
    """This party's noise for every cell: one complete draw of the mechanism each, from the
    CSPRNG unless `rng` is given. (`world_size` no longer changes the draw.)"""
    rng = rng if rng is not None else SecureIntegers()
    if noise.mechanism == "discrete_laplace":
        return sample_discrete_laplace(laplace_scale(noise), cells, rng)
    if noise.mechanism == "discrete_gaussian":
        return sample_discrete_gaussian(gaussian_sigma2(noise), cells, rng)
    raise ValueError(f"unknown noise mechanism {noise.mechanism!r}")


# ---- the distribution of the opened noise, for tests and confidence intervals -----------

def _support(noise: Noise, world_size: int) -> np.ndarray:
    """Integers holding all but < _TAIL of the sum of `world_size` draws (and so of fewer)."""
    n = max(1, world_size)
    if noise.mechanism == "discrete_laplace":
        # Chernoff with lambda = 1/(2 scale): E exp(lambda X) <= 4/3 per draw.
        scale = float(laplace_scale(noise))
        half = 2 * scale * (n * math.log(4 / 3) + math.log(2 / _TAIL))
    else:
        # A discrete Gaussian is sigma^2-subgaussian (CKS), so the sum is n sigma^2-subgaussian.
        half = math.sqrt(2 * n * float(gaussian_sigma2(noise)) * math.log(2 / _TAIL))
    half_int = math.ceil(half) + 10
    return np.arange(-half_int, half_int + 1)


def _single_pmf(noise: Noise, x: np.ndarray) -> np.ndarray:
    if noise.mechanism == "discrete_laplace":
        log_w = -np.abs(x) / float(laplace_scale(noise))
    else:
        log_w = -(x.astype(float) ** 2) / (2 * float(gaussian_sigma2(noise)))
    w = np.exp(log_w)
    pmf: np.ndarray = w / w.sum()
    return pmf


def target_pmf(noise: Noise, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(support, pmf) of one party's draw: the mechanism itself. The support is wide
    enough for the sum of all `world_size` draws."""
    x = _support(noise, world_size)
    return x, _single_pmf(noise, x)


def share_sum_pmf(noise: Noise, world_size: int,
                  shares: int) -> tuple[np.ndarray, np.ndarray]:
    """(support, pmf) of the sum of `shares` parties' independent draws: the `shares`-fold
    convolution of the target, done as a circular convolution over a support so wide
    that wrapping around moves less than _TAIL of the mass."""
    if shares < 1:
        raise ValueError("shares must be >= 1")
    x = _support(noise, max(world_size, shares))
    each = _single_pmf(noise, x)
    if shares == 1:
        return x, each
    half = len(x) // 2
    centred = np.fft.ifftshift(each)  # index 0 holds x = 0
    spectrum = np.fft.rfft(centred) ** shares
    pmf = np.fft.fftshift(np.fft.irfft(spectrum, n=len(x)))
    pmf = np.clip(pmf, 0.0, None)
    assert pmf.shape == x.shape and x[half] == 0
    return x, pmf / pmf.sum()


def interval_half_width(noise: Noise, world_size: int, level: float = 0.95) -> int:
    """The smallest k with P(|noise| <= k) >= level for the noise actually added (the sum
    of all N parties' draws): released value +- k covers the true value with that chance."""
    x, pmf = share_sum_pmf(noise, world_size, max(1, world_size))
    half = len(x) // 2
    # Mass of |noise| <= k for k = 0, 1, ...
    folded = pmf[half:].copy()
    folded[1:] += pmf[:half][::-1]
    covered = np.cumsum(folded)
    return min(int(np.searchsorted(covered, level)), half)
