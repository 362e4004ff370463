"""The noise: the exact integer samplers checked against their distributions over many
seeded draws, calibration that only ever rounds towards more noise, the distribution of
the sum of all parties' full draws and its intervals, and the secure default source."""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest

from mpc.config.spec import Noise
from mpc.protocols.noise import (
    SecureIntegers,
    SeededIntegers,
    bernoulli_exp,
    gaussian_sigma2,
    gaussian_sigma2_float,
    interval_half_width,
    laplace_scale,
    noise_share,
    noise_source,
    sample_discrete_gaussian,
    sample_discrete_laplace,
    share_sum_pmf,
    target_pmf,
)

LAPLACE = Noise("discrete_laplace", epsilon=0.5)
GAUSSIAN = Noise("discrete_gaussian", epsilon=1.0, delta=1e-6)
# A seeded source makes every statistical test below deterministic: with the threshold
# P < 1e-4, a correct sampler would fail about once in 10,000 seeds, and these seeds pass.
P_MIN = 1e-4


# ---- statistics without extra dependencies ---------------------------------------------

def _upper_gamma_regularized(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a): power series below a + 1, continued fraction above."""
    if x <= 0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        n = a
        while abs(term) > abs(total) * 1e-15:
            n += 1
            term *= x / n
            total += term
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return math.exp(log_prefix) * h


def chi_square_p(samples: np.ndarray, support: np.ndarray, pmf: np.ndarray) -> float:
    """p-value of Pearson's chi-square over the values expecting at least 20 draws, the
    rest lumped into one bin."""
    values, counts = np.unique(samples, return_counts=True)
    observed = np.zeros(len(support))
    inside = np.isin(values, support)
    observed[np.searchsorted(support, values[inside])] = counts[inside]
    expected = pmf * len(samples)
    bins = expected >= 20
    stat = float((((observed[bins] - expected[bins]) ** 2) / expected[bins]).sum())
    rest_observed = len(samples) - observed[bins].sum()
    rest_expected = len(samples) - expected[bins].sum()
    dof = int(bins.sum()) - 1
    if rest_expected >= 5:
        stat += (rest_observed - rest_expected) ** 2 / rest_expected
        dof += 1
    else:
        assert rest_observed <= 5 + 10 * rest_expected, "mass far outside the support"
    return _upper_gamma_regularized(dof / 2, stat / 2)


def test_the_chi_square_helper_itself() -> None:
    # Known values of the chi-square survival function.
    assert _upper_gamma_regularized(1.0, 1.0) == pytest.approx(math.exp(-1))
    assert _upper_gamma_regularized(5 / 2, 11.0705 / 2) == pytest.approx(0.05, rel=1e-3)
    assert _upper_gamma_regularized(50.0, 124.342 / 2) == pytest.approx(0.05, rel=1e-3)
    support = np.arange(-3, 4)
    pmf = np.full(7, 1 / 7)
    skewed = np.repeat(support, [1000, 1000, 1000, 1000, 1000, 1000, 1300])
    assert chi_square_p(skewed, support, pmf) < P_MIN


def laplace_pmf(scale: Fraction, x: np.ndarray) -> np.ndarray:
    q = math.exp(-1 / float(scale))
    return (1 - q) / (1 + q) * q ** np.abs(x)


def gaussian_pmf(sigma2: Fraction, x: np.ndarray) -> np.ndarray:
    wide = np.arange(-60 * math.isqrt(int(sigma2) + 1) - 60, 60 * math.isqrt(int(sigma2) + 1) + 61)
    norm = np.exp(-(wide.astype(float) ** 2) / (2 * float(sigma2))).sum()
    return np.exp(-(x.astype(float) ** 2) / (2 * float(sigma2))) / norm


# ---- Bernoulli(exp(-gamma)) -------------------------------------------------------------

@pytest.mark.parametrize("gamma", [Fraction(1, 10), Fraction(1, 3), Fraction(1, 2), Fraction(1),
                                   Fraction(3, 2), Fraction(2), Fraction(7, 3), Fraction(4)])
def test_bernoulli_exp_frequency(gamma: Fraction) -> None:
    rng = SeededIntegers(1000 + gamma.numerator * 31 + gamma.denominator)
    n = 40_000
    hits = sum(bernoulli_exp(gamma, rng) for _ in range(n))
    p = math.exp(-gamma)
    z = (hits - n * p) / math.sqrt(n * p * (1 - p))
    assert abs(z) < 4.5, (gamma, hits / n, p)


def test_bernoulli_exp_edges() -> None:
    rng = SeededIntegers(0)
    assert all(bernoulli_exp(Fraction(0), rng) for _ in range(1000))
    assert all(bernoulli_exp(Fraction(0)) for _ in range(100))  # default secure source
    assert not any(bernoulli_exp(Fraction(200), rng) for _ in range(1000))
    with pytest.raises(ValueError):
        bernoulli_exp(Fraction(-1, 2), rng)


class IntegersOnly:
    """A seeded source that fails the test if asked for anything but a positive int."""

    def __init__(self, seed: int) -> None:
        self.inner = SeededIntegers(seed)
        self.calls = 0

    def randbelow(self, n: int) -> int:
        assert type(n) is int and n > 0, n
        self.calls += 1
        return self.inner.randbelow(n)


def test_samplers_ask_only_for_uniform_integers() -> None:
    rng = IntegersOnly(3)
    assert bernoulli_exp(Fraction(5, 7), rng) in (True, False)
    for scale in (Fraction(1, 2), Fraction(2), Fraction(10, 3), Fraction(10**6 + 1, 10**6)):
        assert sample_discrete_laplace(scale, 200, rng).dtype == np.int64
    for sigma2 in (Fraction(1, 4), Fraction(2), Fraction(28622287, 10**6)):
        assert sample_discrete_gaussian(sigma2, 200, rng).dtype == np.int64
    assert rng.calls > 0


def test_huge_scales_stay_exact_integers() -> None:
    """Floats would lose the last digits of such draws; the integer samplers do not care
    about the size of the scale, only about the int64 output."""
    rng = SeededIntegers(5)
    big = sample_discrete_laplace(Fraction(10**15) + Fraction(1, 3), 2000, rng)
    assert big.dtype == np.int64
    assert 10**14 < np.median(np.abs(big)) < 10**16
    assert len(np.unique(big % 1000)) > 500  # the low digits are random too
    wide = sample_discrete_gaussian(Fraction(10**24, 7), 2000, rng)  # sigma ~ 3.8e11
    assert wide.dtype == np.int64 and 10**11 < wide.std() < 10**12
    with pytest.raises(ValueError):
        sample_discrete_laplace(Fraction(10**30), 10, rng)  # beyond int64
    for bad in (Fraction(0), Fraction(-1)):
        with pytest.raises(ValueError):
            sample_discrete_laplace(bad, 1, rng)
        with pytest.raises(ValueError):
            sample_discrete_gaussian(bad, 1, rng)


# ---- the samplers against their exact distributions -------------------------------------

@pytest.mark.parametrize("scale,draws", [(Fraction(2), 200_000), (Fraction(10, 3), 50_000),
                                         (Fraction(1, 2), 50_000)], ids=str)
def test_discrete_laplace_matches_its_pmf(scale: Fraction, draws: int) -> None:
    samples = sample_discrete_laplace(scale, draws, SeededIntegers(11))
    support = np.arange(-400, 401)
    assert chi_square_p(samples, support, laplace_pmf(scale, support)) > P_MIN
    assert samples.mean() == pytest.approx(0, abs=5 * math.sqrt(4 * float(scale) ** 2 / draws))


@pytest.mark.parametrize("sigma2,draws", [(Fraction(28622287, 10**6), 200_000),
                                          (Fraction(3, 2), 50_000),
                                          (Fraction(1, 3), 50_000)], ids=str)
def test_discrete_gaussian_matches_its_pmf(sigma2: Fraction, draws: int) -> None:
    samples = sample_discrete_gaussian(sigma2, draws, SeededIntegers(12))
    support = np.arange(-200, 201)
    assert chi_square_p(samples, support, gaussian_pmf(sigma2, support)) > P_MIN


def test_a_wrong_pmf_is_rejected() -> None:
    """The goodness-of-fit tests above can fail: a 10% wider Laplace is caught."""
    samples = sample_discrete_laplace(Fraction(2), 50_000, SeededIntegers(13))
    support = np.arange(-400, 401)
    assert chi_square_p(samples, support, laplace_pmf(Fraction(2), support)) > P_MIN
    assert chi_square_p(samples, support, laplace_pmf(Fraction(22, 10), support)) < P_MIN


def test_target_pmf_is_the_mechanism() -> None:
    x, pmf = target_pmf(LAPLACE, 3)
    assert np.allclose(pmf, laplace_pmf(Fraction(2), x), rtol=1e-9, atol=1e-15)
    x, pmf = target_pmf(GAUSSIAN, 3)
    assert np.allclose(pmf, gaussian_pmf(gaussian_sigma2(GAUSSIAN), x), rtol=1e-9, atol=1e-15)


# ---- calibration -------------------------------------------------------------------------

EPSILONS = [0.1, 0.3, 0.5, 1 / 3, 0.7, 1.0, 2.0, 1e-3, 0.123456789]


@pytest.mark.parametrize("sensitivity", [1, 3])
def test_laplace_scale_never_rounds_down(sensitivity: int) -> None:
    for epsilon in EPSILONS:
        scale = laplace_scale(Noise("discrete_laplace", epsilon, sensitivity=sensitivity))
        assert isinstance(scale, Fraction)
        assert scale >= sensitivity / Fraction(epsilon)  # the float's exact value
        assert scale >= sensitivity / Fraction(repr(epsilon))  # the number as written
        assert scale - sensitivity / Fraction(repr(epsilon)) <= Fraction(1, 10**6)
    assert laplace_scale(LAPLACE) == 2
    # 0.3 as a float is slightly below 3/10, so the scale is 10/3 rounded up to the grid.
    assert Fraction(10, 3) < laplace_scale(Noise("discrete_laplace", 0.3)) <= Fraction(
        10, 3) + Fraction(1, 10**6)
    assert laplace_scale(Noise("discrete_laplace", 0.25, sensitivity=3)) == 12
    with pytest.raises(ValueError):
        laplace_scale(Noise("discrete_laplace", 0.0))


@pytest.mark.parametrize("delta", [1e-5, 1e-6, 1e-9])
def test_gaussian_sigma2_never_rounds_down_and_meets_epsilon_delta(delta: float) -> None:
    for epsilon in EPSILONS:
        for sensitivity in (1, 4):
            noise = Noise("discrete_gaussian", epsilon, delta, sensitivity)
            sigma2 = gaussian_sigma2(noise)
            assert isinstance(sigma2, Fraction)
            assert sigma2 >= Fraction(gaussian_sigma2_float(noise))
            # The zCDP conversion, checked with 50 digits: epsilon is met, barely exceeded
            # in noise (rounding adds at most a relative 1e-9 plus 1e-6).
            with localcontext() as ctx:
                ctx.prec = 50
                rho = Decimal(sensitivity**2) / (2 * Decimal(sigma2.numerator)
                                                 / Decimal(sigma2.denominator))
                log_inv_delta = (1 / Decimal(delta)).ln()
                spent = rho + 2 * (rho * log_inv_delta).sqrt()
                assert spent <= Decimal(epsilon)
                assert spent >= Decimal(epsilon) * (1 - Decimal("1e-6"))


def test_gaussian_calibration_formula() -> None:
    sigma2 = float(gaussian_sigma2(GAUSSIAN))
    rho = 1 / (2 * sigma2)
    assert rho + 2 * math.sqrt(rho * math.log(1 / GAUSSIAN.delta)) == pytest.approx(1.0)


# ---- every party draws the full mechanism -----------------------------------------------

@pytest.mark.parametrize("noise", [LAPLACE, GAUSSIAN], ids=["laplace", "gaussian"])
def test_share_sum_pmf_is_the_convolution(noise: Noise) -> None:
    x1, one = target_pmf(noise, 5)
    var_one = float((one * x1.astype(float) ** 2).sum())
    for n in range(1, 6):
        x, pmf = share_sum_pmf(noise, 5, n)
        assert pmf.sum() == pytest.approx(1.0)
        assert np.allclose(pmf, pmf[::-1], atol=1e-15)  # symmetric around 0
        assert float((pmf * x).sum()) == pytest.approx(0.0, abs=1e-9)
        assert float((pmf * x.astype(float) ** 2).sum()) == pytest.approx(n * var_one, rel=1e-9)
    # Two-fold against a direct convolution.
    x, two = share_sum_pmf(noise, 5, 2)
    direct = np.convolve(one, one)[len(x1) // 2: len(x1) // 2 + len(x1)]
    assert np.allclose(two, direct, atol=1e-14)


def test_the_sum_of_all_parties_draws_has_the_stated_distribution() -> None:
    parties, cells = 3, 40_000
    shares = [noise_share(LAPLACE, parties, cells, SeededIntegers(20 + r)) for r in range(parties)]
    total = np.sum(shares, axis=0)
    support, pmf = share_sum_pmf(LAPLACE, parties, parties)
    assert chi_square_p(total, support, pmf) > P_MIN
    # Each party's own draw is the whole mechanism.
    support, target = target_pmf(LAPLACE, parties)
    for share in shares:
        assert chi_square_p(share, support, target) > P_MIN
    # And the interval covers what it says (binomial sd of the coverage ~ 0.0011).
    k = interval_half_width(LAPLACE, parties)
    covered = (np.abs(total) <= k).mean()
    below = pmf[np.abs(support) <= k].sum()
    assert covered == pytest.approx(below, abs=0.005) and below >= 0.95


@pytest.mark.parametrize("noise", [LAPLACE, GAUSSIAN], ids=["laplace", "gaussian"])
def test_interval_is_the_smallest_that_covers_and_grows_with_parties(noise: Noise) -> None:
    widths = []
    for n in range(1, 8):
        k = interval_half_width(noise, n)
        x, pmf = share_sum_pmf(noise, n, n)
        assert pmf[np.abs(x) <= k].sum() >= 0.95
        assert pmf[np.abs(x) <= k - 1].sum() < 0.95
        assert interval_half_width(noise, n, level=0.99) > k
        widths.append(k)
    assert widths == sorted(widths) and widths[-1] > widths[0]
    assert len(set(widths)) == len(widths)  # strictly increasing


def test_interval_examples() -> None:
    # One discrete Laplace of scale 2: P(|X| <= k) = 1 - 2 q^(k+1) / (1 + q), q = e^(-1/2).
    q = math.exp(-0.5)
    k = interval_half_width(LAPLACE, 1)
    assert 1 - 2 * q ** (k + 1) / (1 + q) >= 0.95 > 1 - 2 * q**k / (1 + q)
    assert interval_half_width(LAPLACE, 1) == 6


def test_noise_share_shape_type_and_sources() -> None:
    for noise in (LAPLACE, GAUSSIAN):
        for cells in (0, 1, 17):
            share = noise_share(noise, 3, cells)  # default: the secure source
            assert share.dtype == np.int64 and share.shape == (cells,)
        seeded = [noise_share(noise, 3, 50, noise_source(9)) for _ in range(2)]
        assert np.array_equal(*seeded)
        # world_size does not change the draw: every party draws the full mechanism.
        assert np.array_equal(noise_share(noise, 2, 50, noise_source(9)),
                              noise_share(noise, 7, 50, noise_source(9)))
    with pytest.raises(ValueError):
        noise_share(Noise("gaussian_float", 1.0), 3, 1)


def test_secure_integers_are_the_default_and_uniform() -> None:
    assert isinstance(noise_source(), SecureIntegers)
    assert isinstance(noise_source(1), SeededIntegers)
    rng = SecureIntegers()
    draws = [rng.randbelow(6) for _ in range(6000)]
    assert set(draws) == set(range(6))
    assert min(draws.count(v) for v in range(6)) > 800
    assert rng.randbelow(1) == 0
    big = [rng.randbelow(2**200) for _ in range(4)]
    assert len(set(big)) == 4 and all(0 <= b < 2**200 for b in big)
    # Two fresh secure sources do not repeat each other.
    assert not np.array_equal(noise_share(LAPLACE, 3, 64), noise_share(LAPLACE, 3, 64))
