"""The distribution protocol with parties as threads, against a plaintext Kaplan-Meier and
quantile computation written here from the rows themselves (not from the histograms)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from mpc.config.rules import DisclosureRules
from mpc.protocols.distribution import (
    CENSORED,
    EVENTS,
    QUANTILE_DENOMINATOR,
    SCALE,
    SCALE_BITS,
    Layout,
    distribution,
)
from mpc.protocols.integer import divide_floor, prefix_product
from mpc.testing.inprocess import run_in_threads
from tests.helpers import bin_of, plaintext_distribution

EDGES = (0, 30, 60, 90, 120, 180, 270, 365)
QUANTILES = (0.25, 0.5, 0.75)
LAYOUT = Layout(EDGES, tuple(round(q * QUANTILE_DENOMINATOR) for q in QUANTILES))


def histogram(rows: list[tuple[int, int, bool]], groups: int) -> torch.Tensor:
    """rows: (group, days, censored) -> (groups, bins, 2) over EDGES."""
    return histogram_of(rows, LAYOUT, groups)


def reference(rows: list[tuple[int, int, bool]], censored: bool,
              rules: DisclosureRules) -> list[dict]:
    return plaintext_distribution(rows, max(r[0] for r in rows) + 1, EDGES, QUANTILES, rules,
                                  censored)


def run(histograms: list[torch.Tensor], censored: bool, rules: DisclosureRules,
        layout: Layout = LAYOUT) -> tuple[np.ndarray, np.ndarray]:
    def program(ctx):  # noqa: ANN001, ANN202
        released = distribution(ctx, histograms[ctx.rank], layout, rules, censored)
        return (ctx.open_to(released.keep, 0), ctx.open_to(released.value, 0))

    keep, value = run_in_threads(program, world_size=len(histograms))[0]
    return keep.numpy(), value.numpy()


def random_rows(rng: np.random.Generator, groups: int, per_group: list[int],
                censored_share: float) -> list[tuple[int, int, bool]]:
    rows = []
    for g in range(groups):
        for _ in range(per_group[g]):
            rows.append((g, int(rng.exponential(150)), bool(rng.random() < censored_share)))
    return rows


def check(rows: list[tuple[int, int, bool]], parties: int, censored: bool,
          rules: DisclosureRules, seed: int = 0) -> list[dict]:
    groups = max(r[0] for r in rows) + 1
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, parties, len(rows))
    hists = [histogram([r for r, o in zip(rows, owner, strict=True) if o == p], groups)
             for p in range(parties)]
    keep, value = run(hists, censored, rules)
    keep = keep.reshape(groups, LAYOUT.per_group).astype(bool)
    value = value.reshape(groups, LAYOUT.per_group)
    expected = reference(rows, censored, rules)
    q, m = len(QUANTILES), LAYOUT.finite
    bound = Fraction(2 * m, SCALE) if censored else Fraction(1, SCALE)
    for g, exp in enumerate(expected):
        assert keep[g, 0] == exp["keep_n"]
        assert value[g, 0] == (exp["n"] if exp["keep_n"] else 0)
        curve = value[g, 1 + 2 * q:]
        for k in range(m):
            assert keep[g, 1 + 2 * q + k] == exp["keep_curve"][k], (g, k)
            if exp["keep_curve"][k]:
                got = Fraction(int(curve[k]), SCALE)
                assert exp["curve"][k] - bound <= got <= exp["curve"][k], (g, k)
            else:
                assert curve[k] == 0
        for i, (b, v) in enumerate(exp["quantiles"]):
            assert keep[g, 1 + i] == keep[g, 1 + q + i] == exp["keep_q"][i], (g, i)
            if not exp["keep_q"][i]:
                assert value[g, 1 + i] == value[g, 1 + q + i] == 0
                continue
            thr = 1 - Fraction(round(QUANTILES[i] * QUANTILE_DENOMINATOR),
                               QUANTILE_DENOMINATOR)
            near = censored and any(abs(c - thr) <= bound for c in exp["curve"])
            if not near:  # away from a tie with fixed point, bin and value are exact
                assert value[g, 1 + i] == b, (g, i)
                tolerance = 0 if not censored else 1
                assert abs(int(value[g, 1 + q + i]) - v) <= tolerance, (g, i)
    return expected


@pytest.mark.parametrize("parties", [2, 3])
def test_quantiles_and_curve_without_censoring(parties: int) -> None:
    rng = np.random.default_rng(1)
    rows = random_rows(rng, 5, [40, 12, 3, 0, 200], censored_share=0.0)
    expected = check(rows, parties, censored=False, rules=DisclosureRules(min_cell=10))
    assert not expected[3]["keep_n"] or expected[3]["n"] == 0
    assert any(not all(e["keep_q"]) for e in expected if e["n"] >= 10), \
        "expected a quantile suppressed for its number at risk"


def test_kaplan_meier_with_censoring() -> None:
    rng = np.random.default_rng(2)
    rows = random_rows(rng, 4, [60, 25, 150, 11], censored_share=0.35)
    check(rows, 3, censored=True, rules=DisclosureRules(min_cell=10))


def test_all_censored_group_never_reaches_its_quantiles() -> None:
    rows = [(0, 10 * i, True) for i in range(30)] + [(1, 5 * i, False) for i in range(30)]
    expected = check(rows, 2, censored=True, rules=DisclosureRules(min_cell=5))
    assert all(b == LAYOUT.finite for b, _ in expected[0]["quantiles"])
    assert all(c == 1 for c in expected[0]["curve"])


def test_quantile_exactly_on_an_edge() -> None:
    # 20 episodes: 10 below 30 days, 10 from 60 on: the median's cumulative count reaches
    # q * n exactly at the first bin's right edge.
    rows = [(0, 5, False)] * 10 + [(0, 70, False)] * 10
    keep, value = run([histogram(rows[:7], 1), histogram(rows[7:], 1)], False,
                      DisclosureRules(min_cell=5))
    q = len(QUANTILES)
    assert value[1 + 1] == 0 and value[1 + q + 1] == 30  # median: bin 0, at its edge 30
    assert value[1 + q] == 15  # first quartile: halfway into [0, 30)
    # q75 lies in [60, 90), halfway, but nobody is at risk at 90: the point is not shown,
    # so neither is the quantile that would tell where the curve goes there
    assert not keep[1 + 2] and value[1 + 2] == value[1 + q + 2] == 0
    # curve: at risk at 30 and 60 are 10 (released), from 90 on nobody (suppressed)
    assert keep[[0, 1, 2, 1 + q, 1 + q + 1]].all()
    assert keep[1 + 2 * q: 1 + 2 * q + 2].all() and not keep[1 + 2 * q + 2:].any()
    assert value[1 + 2 * q: 1 + 2 * q + 2].tolist() == [SCALE // 2, SCALE // 2]


def test_contributor_rule_and_suppressed_zero() -> None:
    rows = [(0, 5, False)] * 20 + [(1, 5, False)] * 20
    only_first = histogram(rows, 3)  # group 2 is empty; all rows at party 0
    empty = torch.zeros_like(only_first)
    keep, value = run([only_first, empty, empty], False,
                      DisclosureRules(min_cell=5, min_contributors=2))
    keep = keep.reshape(3, -1)
    assert not keep[:2].any()  # one party only: the contributor rule suppresses all
    assert keep[2, 0] and not keep[2, 1:].any() and value.reshape(3, -1)[2, 0] == 0
    keep, _ = run([only_first, empty, empty], False, DisclosureRules(min_cell=5,
                                                                     suppress_zero=True))
    assert not keep.reshape(3, -1)[2].any()


def test_divide_floor_and_prefix_product_are_exact() -> None:
    num = torch.tensor([0, 7, 100, 2**20, 999_999], dtype=torch.int64)
    den = torch.tensor([1, 2, 7, 3, 1000], dtype=torch.int64)
    factors = torch.tensor([[SCALE, SCALE // 2, SCALE // 3, SCALE - 1]], dtype=torch.int64)

    def program(ctx):  # noqa: ANN001, ANN202
        a = ctx.share(num if ctx.rank == 0 else None, 0, num.shape)
        b = ctx.share(den if ctx.rank == 1 else None, 1, den.shape)
        f = ctx.share(factors if ctx.rank == 0 else None, 0, factors.shape)
        return (ctx.open_to(divide_floor(a, b, 21), 0),
                ctx.open_to(prefix_product(ctx, f, SCALE_BITS), 0))

    quotient, products = run_in_threads(program, world_size=2)[0]
    assert quotient.tolist() == (num // den).tolist()
    expected, acc = [], SCALE
    for j, f in enumerate(factors[0].tolist()):
        acc = f if j == 0 else acc * f >> SCALE_BITS
        expected.append(acc)
    # The scan truncates in a different order than left to right: within j units.
    for j, (got, want) in enumerate(zip(products[0].tolist(), expected, strict=True)):
        assert abs(got - want) <= j


def derived_counts(keep: np.ndarray, value: np.ndarray, layout: Layout) -> list[int]:
    """Every count an analyst derives from an uncensored release: n, each shown r_k = S n,
    and the differences between consecutive shown points (n first)."""
    q = len(layout.quantiles)
    out = []
    for k_row, v_row in zip(keep, value, strict=True):
        if not k_row[0]:
            continue
        n = int(v_row[0])
        at_risk = [n] + [round(int(v_row[1 + 2 * q + k]) * n / SCALE)
                         for k in range(layout.finite) if k_row[1 + 2 * q + k]]
        out += at_risk + [a - b for a, b in zip(at_risk, at_risk[1:], strict=False)]
    return out


def test_a_coordinator_cannot_isolate_one_person_with_narrow_bins() -> None:
    # One person stopped on day 6: bins of one day around it would show the step of one
    # person (S(6) = 20/30, S(7) = 19/30). The step rule shows no point whose step holds
    # fewer than min_cell events.
    layout = Layout((0, 5, 6, 7, 20, 30), (5000,))
    rows = [(0, 5, False)] * 10 + [(0, 6, False)] + [(0, 20, False)] * 19
    keep, value = run([histogram_of(rows[::2], layout), histogram_of(rows[1::2], layout)],
                      False, DisclosureRules(min_cell=10), layout)
    keep, value = keep.reshape(1, -1).astype(bool), value.reshape(1, -1)
    counts = derived_counts(keep, value, layout)
    assert counts == [30, 30, 20, 0, 10]  # n, r(5), r(6), then the two steps
    assert all(c == 0 or c >= 10 for c in counts)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_every_count_derived_from_an_uncensored_release_is_zero_or_large(seed: int) -> None:
    rng = np.random.default_rng(seed)
    layout = Layout((0, 10, 20, 30, 40, 60, 90, 120, 200), (2500, 5000, 7500))
    rows = [(g, int(rng.exponential(40)), False) for g in range(6)
            for _ in range(int(rng.integers(5, 80)))]
    rules = DisclosureRules(min_cell=8)
    owner = rng.integers(0, 3, len(rows))
    hists = [histogram_of([r for r, o in zip(rows, owner, strict=True) if o == p], layout,
                          groups=6) for p in range(3)]
    keep, value = run(hists, False, rules, layout)
    keep = keep.reshape(6, -1).astype(bool)
    value = value.reshape(6, -1)
    counts = derived_counts(keep, value, layout)
    assert len(counts) > 12  # the release shows enough to test
    assert all(c == 0 or c >= rules.min_cell for c in counts), counts


def histogram_of(rows: list[tuple[int, int, bool]], layout: Layout,
                 groups: int = 1) -> torch.Tensor:
    h = torch.zeros((groups, layout.bins, 2), dtype=torch.int64)
    for g, t, c in rows:
        h[g, bin_of(t, layout.edges), CENSORED if c else EVENTS] += 1
    return h
