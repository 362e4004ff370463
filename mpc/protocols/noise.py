"""Differentially private noise, drawn by the parties and added inside MPC.

Every party draws a *share* of the noise from a cryptographic generator (ChaCha20,
a fresh 256-bit key per job) and inputs it secretly, like its table; only
value + (sum of the shares) is ever opened. The shares are calibrated so that the
sum of any N-1 of them already has the target distribution: a recipient that
knows one party's share (its own, say) still faces the full noise.

- Discrete Laplace, P(x) ~ exp(-|x| / t) with t = sensitivity / epsilon, gives
  epsilon-DP. It is a difference of two geometric variables, and a geometric is a sum
  of m negative binomials with r = 1/m (infinitely divisible), so each party draws
  NB(1/(N-1), p) - NB(1/(N-1), p): any N-1 shares sum to exactly the discrete
  Laplace; all N to slightly more noise.
- Discrete Gaussian, P(x) ~ exp(-x^2 / (2 sigma^2)), gives rho-zCDP with
  rho = sensitivity^2 / (2 sigma^2) (Canonne, Kamath and Steinke 2020), converted to
  (epsilon, delta)-DP by epsilon = rho + 2 sqrt(rho log(1/delta)). Each party draws
  DG(sigma^2 / (N-1)) (the CKS exact rejection sampler); a sum of discrete Gaussians
  is not exactly one, but for these variances the two are indistinguishable (the
  distributed discrete Gaussian, Kairouz, Liu and Steinke 2021; tested here).
"""

from __future__ import annotations

import math
import os

import numpy as np
from randomgen import ChaCha

from mpc.config.spec import Noise


def noise_generator(key: bytes | None = None) -> np.random.Generator:
    """numpy's samplers over ChaCha20 (20 rounds) with a 256-bit key: never Mersenne
    Twister, and a fresh key per job unless a test fixes one."""
    key = key if key is not None else os.urandom(32)
    if len(key) != 32:
        raise ValueError("noise keys are 32 bytes")
    words = np.frombuffer(key, dtype="<u8").copy()
    return np.random.Generator(ChaCha(key=words, counter=0, rounds=20))


def laplace_scale(noise: Noise) -> float:
    return noise.sensitivity / noise.epsilon


def gaussian_sigma2(noise: Noise) -> float:
    """sigma^2 for which DG(sigma^2) is (epsilon, delta)-DP through zCDP."""
    log_inv_delta = math.log(1 / noise.delta)
    rho = (math.sqrt(log_inv_delta + noise.epsilon) - math.sqrt(log_inv_delta)) ** 2
    return noise.sensitivity**2 / (2 * rho)


def sample_discrete_laplace(t: float, size: int, rng: np.random.Generator,
                            parts: int = 1) -> np.ndarray:
    """One of `parts` shares whose sum is discrete Laplace with scale t."""
    success = 1 - math.exp(-1 / t)  # a geometric counts failures before this success
    r = 1 / parts
    return (rng.negative_binomial(r, success, size) -
            rng.negative_binomial(r, success, size)).astype(np.int64)


def sample_discrete_gaussian(sigma2: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """Exact rejection sampler of Canonne, Kamath and Steinke (2020), vectorised: propose
    a discrete Laplace with t = floor(sigma) + 1, accept with a Gaussian-shaped chance."""
    sigma = math.sqrt(sigma2)
    t = math.floor(sigma) + 1
    out = np.empty(size, dtype=np.int64)
    filled = 0
    while filled < size:
        want = max(64, int((size - filled) * 1.6))
        y = sample_discrete_laplace(t, want, rng)
        accept = rng.random(want) < np.exp(-((np.abs(y) - sigma2 / t) ** 2) / (2 * sigma2))
        taken = y[accept][: size - filled]
        out[filled: filled + len(taken)] = taken
        filled += len(taken)
    return out


def noise_share(noise: Noise, world_size: int, cells: int,
                rng: np.random.Generator) -> np.ndarray:
    """This party's share of the noise for every cell (any N-1 shares carry it all)."""
    parts = max(1, world_size - 1)
    if noise.mechanism == "discrete_laplace":
        return sample_discrete_laplace(laplace_scale(noise), cells, rng, parts)
    return sample_discrete_gaussian(gaussian_sigma2(noise) / parts, cells, rng)


# ---- the distribution of the opened noise, for tests and confidence intervals ----------

def _support(noise: Noise, world_size: int) -> np.ndarray:
    if noise.mechanism == "discrete_laplace":
        spread = laplace_scale(noise) * world_size / max(1, world_size - 1)
        half = int(60 * spread) + 10
    else:
        half = int(14 * math.sqrt(gaussian_sigma2(noise) * 2)) + 10
    return np.arange(-half, half + 1)


def share_sum_pmf(noise: Noise, world_size: int, shares: int) -> tuple[np.ndarray, np.ndarray]:
    """(support, pmf) of the sum of `shares` parties' noise shares."""
    x = _support(noise, world_size)
    parts = max(1, world_size - 1)
    if noise.mechanism == "discrete_laplace":
        # A difference of two negative binomials with r = shares/parts.
        q = math.exp(-1 / laplace_scale(noise))
        r = shares / parts
        k = np.arange(len(x))
        log_nb = (np.array([math.lgamma(i + r) for i in k]) - math.lgamma(r)
                  - np.array([math.lgamma(i + 1) for i in k]) + r * math.log(1 - q)
                  + k * math.log(q))
        nb = np.exp(log_nb)
        diff = np.convolve(nb, nb[::-1])  # index len(k)-1 is 0
        pmf = diff[len(k) - 1 + x]  # index len(k) - 1 holds the difference 0
    else:
        each = np.exp(-(x.astype(float) ** 2) / (2 * gaussian_sigma2(noise) / parts))
        each /= each.sum()
        pmf = each
        for _ in range(shares - 1):
            pmf = np.convolve(pmf, each, mode="same")
    return x, pmf / pmf.sum()


def target_pmf(noise: Noise, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(support, pmf) of the target mechanism itself."""
    x = _support(noise, world_size)
    if noise.mechanism == "discrete_laplace":
        pmf = np.exp(-np.abs(x) / laplace_scale(noise))
    else:
        pmf = np.exp(-(x.astype(float) ** 2) / (2 * gaussian_sigma2(noise)))
    return x, pmf / pmf.sum()


def interval_half_width(noise: Noise, world_size: int, level: float = 0.95) -> int:
    """The smallest k with P(|noise| <= k) >= level, for the noise actually added (the sum
    of all N shares): released value +- k covers the true value with that chance."""
    x, pmf = share_sum_pmf(noise, world_size, world_size)
    order = np.argsort(np.abs(x), kind="stable")
    covered = np.cumsum(pmf[order])
    return int(np.abs(x[order][np.searchsorted(covered, level)]))
