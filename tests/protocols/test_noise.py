"""The noise: each distribution checked against its target over many draws (fixed keys),
the N-1 calibration, the intervals, and the generator underneath."""

from __future__ import annotations

import numpy as np
import pytest
from randomgen import ChaCha

from mpc.config.spec import Noise
from mpc.protocols.noise import (
    gaussian_sigma2,
    interval_half_width,
    noise_generator,
    noise_share,
    share_sum_pmf,
    target_pmf,
)

LAPLACE = Noise("discrete_laplace", epsilon=0.5)
GAUSSIAN = Noise("discrete_gaussian", epsilon=1.0, delta=1e-6)
DRAWS = 200_000


def chi_square(samples: np.ndarray, support: np.ndarray, pmf: np.ndarray) -> tuple[float, int]:
    """Chi-square statistic over the bins expecting at least 20 draws, and its dof."""
    counts = np.array([(samples == v).sum() for v in support])
    expected = pmf * len(samples)
    bins = expected >= 20
    rest_observed = len(samples) - counts[bins].sum()
    rest_expected = len(samples) - expected[bins].sum()
    stat = float((((counts[bins] - expected[bins]) ** 2) / expected[bins]).sum())
    stat += (rest_observed - rest_expected) ** 2 / max(rest_expected, 1e-9)
    return stat, int(bins.sum())


# 99.9% quantiles of chi-square: a correct sampler fails this 1 time in 1000 per test,
# and with fixed keys the outcome is the same on every run.
def critical(dof: int) -> float:
    return dof + 3.1 * np.sqrt(2 * dof) + 10


@pytest.mark.parametrize("noise", [LAPLACE, GAUSSIAN], ids=["laplace", "gaussian"])
@pytest.mark.parametrize("parties", [2, 3, 5])
def test_any_n_minus_one_shares_carry_the_target_noise(noise: Noise, parties: int) -> None:
    rng = noise_generator(bytes(range(32)))
    shares = np.stack([noise_share(noise, parties, DRAWS, rng) for _ in range(parties)])
    support, target = target_pmf(noise, parties)
    # What a recipient faces after subtracting one party's share (its own): N-1 shares.
    for known in range(parties):
        rest = shares.sum(axis=0) - shares[known]
        stat, dof = chi_square(rest, support, target)
        assert stat < critical(dof), (known, stat, dof)
    # And the noise actually added (all N shares) matches its own, wider distribution.
    support, full = share_sum_pmf(noise, parties, parties)
    stat, dof = chi_square(shares.sum(axis=0), support, full)
    assert stat < critical(dof), (stat, dof)


def test_a_single_share_alone_is_not_the_target() -> None:
    """The test above can fail: one share of three has far less than the target noise."""
    rng = noise_generator(bytes(32))
    share = noise_share(LAPLACE, 3, DRAWS, rng)
    support, target = target_pmf(LAPLACE, 3)
    stat, dof = chi_square(share, support, target)
    assert stat > critical(dof)


def test_intervals_cover_what_they_say() -> None:
    rng = noise_generator(bytes([7]) * 32)
    for noise in (LAPLACE, GAUSSIAN):
        k = interval_half_width(noise, 3)
        total = sum(noise_share(noise, 3, DRAWS, rng) for _ in range(3))
        covered = (np.abs(total) <= k).mean()
        assert 0.95 <= covered < 0.975, (noise.mechanism, k, covered)


def test_gaussian_calibration_meets_its_epsilon_delta() -> None:
    sigma2 = gaussian_sigma2(GAUSSIAN)
    rho = 1 / (2 * sigma2)  # sensitivity 1
    assert rho + 2 * np.sqrt(rho * np.log(1 / GAUSSIAN.delta)) == pytest.approx(1.0)


def test_noise_comes_from_chacha20_with_a_fresh_key() -> None:
    a, b = noise_generator(), noise_generator()
    assert isinstance(a.bit_generator, ChaCha)
    assert not np.array_equal(a.integers(0, 2**62, 8), b.integers(0, 2**62, 8))
    same = [noise_generator(bytes(32)).integers(0, 2**62, 8) for _ in range(2)]
    assert np.array_equal(*same)


def noisy_release(ctx, cells: int):  # type: ignore[no-untyped-def]
    """Each party: 1,000 in every cell, its noise share; the noisy total opened to party 0."""
    import torch

    from mpc.config.spec import DisclosureRules
    from mpc.protocols.aggregate import aggregate

    share = noise_share(LAPLACE, ctx.world_size, cells,
                        noise_generator(bytes([ctx.rank + 1]) * 32))
    values = torch.full((cells,), 1000, dtype=torch.int64)
    released = aggregate(ctx, values, torch.ones(cells, dtype=torch.int64),
                         DisclosureRules(min_cell=1), noise=torch.from_numpy(share))
    opened = ctx.open_to(released.value, 0)
    return {"share": share, "opened": None if opened is None else opened.numpy()}


def test_noise_added_inside_mpc_cannot_be_removed_by_a_party() -> None:
    from mpc.testing import run_local_parties

    cells = 30_000
    results = run_local_parties(noisy_release, 3, args=(cells,))
    shares = np.stack([r["share"] for r in results])
    noise = results[0]["opened"] - 3 * 1000
    assert np.array_equal(noise, shares.sum(axis=0))  # exactly the parties' shares, added
    # Party 0 is the recipient and knows its own share: what remains is the full target.
    support, target = target_pmf(LAPLACE, 3)
    stat, dof = chi_square(noise - shares[0], support, target)
    assert stat < critical(dof)
