"""Quantiles and survival curves of a measure (days) over public bins, on secret shares.

Every party inputs, per group, its histogram of the measure over the public bins
[e_0, e_1), ..., [e_{m-1}, e_m), [e_m, inf) (values below e_0 count in the first bin),
events and censored episodes apart. The histograms are added on shares; no histogram, no
bin count and no party's numbers are ever opened. Per group, what may be opened is:

- n, the number of episodes, under the aggregate rules (min_cell, min_contributors,
  suppress_zero);
- the survival curve S at each edge e_1..e_m: the fraction of episodes still going at
  that edge. Without censoring that is r_k / n, with r_k the episodes whose measure is at
  least e_k ("at risk at e_k"); with censoring it is the Kaplan-Meier product
  S(e_k) = prod_{j<k} (1 - d_j / r_j), d_j the events in bin j. A point is shown only
  while the number at risk at its edge reaches min_cell (r_k is non-increasing, so the
  shown points are a prefix of the curve), and only if the step from the point before it
  carries at least min_cell events, or none at all with the point before shown (the step
  rule). Without censoring every count that follows from a release (n, each r_k = S n, any
  difference between shown points) is then 0 or at least min_cell, as for aggregates; with
  censoring each shown step holds at least min_cell events;
- each requested quantile q: its bin b, the first bin at whose right edge the curve has
  fallen to 1 - q or below (without censoring: the first bin whose cumulative count
  reaches q*n), and a value interpolated linearly in the curve inside that bin:
      t = e_b + w_b * (S(e_b) - (1 - q)) / (S(e_b) - S(e_{b+1})),  w_b = e_{b+1} - e_b,
  rounded to the nearest day (halves up); without censoring this is the grouped-data
  formula e_b + w_b (q n - F_{b-1}) / h_b, in exact integers. b = m means the curve stays
  above 1 - q at e_m ("not reached"; without censoring: the quantile lies at or beyond
  e_m); its value is then e_m. A quantile is released only for a group that passes the
  rules and where the curve points at both ends of its bin are shown (beyond the last
  edge: where S(e_m) is): it is then a function of released points, computed exactly.

Fixed point: S is held as an integer scaled by 2**SCALE_BITS. Without censoring each point
is floor(2**24 r_k / n): below the exact value by less than 2**-24, and the quantiles are
exact integer comparisons. With censoring each factor is floor(2**24 (r_j - d_j) / r_j)
(exact long division) and the running product is truncated exactly after each product, so
a computed S(e_k) is below the exact Kaplan-Meier value by less than 2k * 2**-24 (at most
1.2e-5 with 100 bins). A Kaplan-Meier quantile's bin is then the exact one unless the exact
S at an edge lies within that bound of 1 - q; its value is within half a day plus w_b
times the bound over S(e_b) - S(e_{b+1}) of the exact one (so a day at most, in practice).

Cost, for G groups, m finite bins and Q quantiles: one comparison batch for the rules, 25
rounds of long division for the curve (plus ceil(log2 m) exact truncations with censoring),
ceil(log2 m) products for the step rule,
one comparison batch for the quantile bins, and ~log2(max w) rounds for the interpolation;
every round is batched over all groups, bins and quantiles.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mpc.config.rules import DisclosureRules
from mpc.engine.secret import MpcContext, Secret
from mpc.protocols.aggregate import Released
from mpc.protocols.integer import divide_floor, prefix_product

SCALE_BITS = 24
SCALE = 1 << SCALE_BITS
QUANTILE_DENOMINATOR = 10_000  # quantiles are given to four decimals
EVENTS, CENSORED = 0, 1  # the histogram's last axis

Phase = Callable[[str], None]


@dataclass(frozen=True)
class Layout:
    """The public shape of a distribution release: per group, in this order,
    n, the Q quantile bins, the Q quantile values, and the m curve points."""

    edges: tuple[int, ...]
    quantiles: tuple[int, ...]  # numerators over QUANTILE_DENOMINATOR

    @property
    def bins(self) -> int:
        """Histogram bins: one per edge (the last is open-ended)."""
        return len(self.edges)

    @property
    def finite(self) -> int:
        """m: the bins with a right edge, and the curve's points."""
        return len(self.edges) - 1

    @property
    def per_group(self) -> int:
        return 1 + 2 * len(self.quantiles) + self.finite

    def widths(self) -> list[int]:
        return [b - a for a, b in zip(self.edges, self.edges[1:], strict=False)]


def distribution(ctx: MpcContext, histogram: torch.Tensor, layout: Layout,
                 rules: DisclosureRules, censored: bool,
                 phase: Phase = lambda _: None) -> Released:
    """`histogram`: this party's int64 counts of shape (groups, bins, 2), [..., EVENTS] and
    [..., CENSORED] (all zero without censoring). Returns the shares of the release,
    (groups * layout.per_group) values, see Layout."""
    groups, bins, channels = histogram.shape
    if bins != layout.bins or channels != 2:
        raise ValueError(f"histogram of shape {tuple(histogram.shape)} for {layout.bins} bins")
    m, quantiles = layout.finite, layout.quantiles
    phase("sharing")
    contributes = (histogram.sum((1, 2)) > 0).long()
    local = torch.cat([histogram.flatten(), contributes])
    parts = ctx.share_from_each(local)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    phase("computing")
    cells = groups * bins * 2
    hist = total[:cells].reshape(groups, bins, 2)
    contributors = total[cells:]
    events = hist[:, :, EVENTS]
    exits = hist.sum(2)  # (groups, bins): episodes whose measure lies in the bin
    n = exits.sum(1)
    left = exits.cumsum(1)  # episodes ending in or before each bin
    at_risk = n.unsqueeze(1) - (left - exits)  # r_k, k = 0..bins-1 (r_0 = n)

    # One comparison batch: the group rules, the number at risk at every edge, whether
    # anyone is at risk in each finite bin (for the Kaplan-Meier factors), and whether
    # each bin's events reach min_cell or are none (for the step rule).
    tests: list[Secret] = [n - rules.min_cell, n - 1]
    if rules.min_contributors > 1:
        tests.append(contributors - rules.min_contributors)
    per_bin = [at_risk[:, 1:] - rules.min_cell, at_risk[:, :m] - 1,
               events[:, :m] - rules.min_cell, events[:, :m] - 1]
    tests += [t.flatten() for t in per_bin]
    sizes = [groups] * (len(tests) - len(per_bin)) + [groups * m] * len(per_bin)
    passed = _split(ctx.cat(tests).nonnegative(), sizes)
    enough, nonempty = passed[0], passed[1]
    big = enough * passed[2] if rules.min_contributors > 1 else enough  # passes the rules
    keep_n = big if rules.suppress_zero else big + (1 - nonempty)
    at_risk_ok, someone, step_ok, some_events = (x.reshape(groups, m) for x in passed[-4:])
    shown = _shown_points(ctx, at_risk_ok, step_ok, 1 - some_events)  # e_0 .. e_m

    phase("curve")
    if censored:
        nobody = 1 - someone  # r_j = 0: the factor is 1 (no one left, the curve stays)
        num = (at_risk[:, :m] - events[:, :m] + nobody) * SCALE
        factors = divide_floor(num, at_risk[:, :m] + nobody, SCALE_BITS + 1)
        curve = prefix_product(ctx, factors, SCALE_BITS)  # S(e_1) .. S(e_m)
    else:
        safe_n = (n + (1 - nonempty)).unsqueeze(1).expand(groups, m)
        curve = divide_floor(at_risk[:, 1:] * SCALE, safe_n, SCALE_BITS + 1)

    phase("quantiles")
    # A quantile's bin and value follow from the curve points around it: shown only where
    # both are (beyond the last edge: where the last point is), so they add precision,
    # never a count the curve does not release.
    bracket = ctx.cat([shown[:, :m] * shown[:, 1:], shown[:, m:]], dim=1)  # b = 0..m
    bin_of, value, shown_b = _quantiles(ctx, layout, censored, n, left, exits, curve,
                                        bracket)
    q = len(quantiles)
    # One product: the group rules times what each point and quantile needs.
    keeps = ctx.cat([big.unsqueeze(1).expand(groups, m).flatten(),
                     big.unsqueeze(1).expand(groups, q).flatten()]) * \
        ctx.cat([shown[:, 1:].flatten(), shown_b.flatten()])
    keep_curve, keep_q = _split(keeps, [groups * m, groups * q])
    keep = ctx.cat([keep_n.unsqueeze(1), keep_q.reshape(groups, q), keep_q.reshape(groups, q),
                    keep_curve.reshape(groups, m)], dim=1)
    values = ctx.cat([n.unsqueeze(1), bin_of, value, curve], dim=1)
    phase("disclosure")
    return Released(keep=keep.flatten(), value=(values * keep).flatten())


def _shown_points(ctx: MpcContext, at_risk_ok: Secret, step_ok: Secret,
                  no_events: Secret) -> Secret:
    """Which curve points e_0..e_m may be shown, (groups, m + 1), before the group rules:
    e_0 (S = 1) always; e_k when at least min_cell are at risk at e_k and the bin before it
    has at least min_cell events, or none and e_{k-1} is shown. So any two shown points
    differ by 0 or at least min_cell events. The recurrence shown_k = a_k + b_k shown_{k-1}
    is a scan over affine maps: ceil(log2 m) rounds of one batched product."""
    groups, m = at_risk_ok.shape
    pair = ctx.cat([at_risk_ok, at_risk_ok], dim=1) * ctx.cat([step_ok, no_events], dim=1)
    a, b = pair[:, :m], pair[:, m:]  # shown_k = a_k + b_k * shown_{k-1}, k = 1..m
    offset = 1
    while offset < m:
        both = ctx.cat([b[:, offset:], b[:, offset:]], dim=1) * \
            ctx.cat([a[:, : m - offset], b[:, : m - offset]], dim=1)
        width = m - offset
        a = ctx.cat([a[:, :offset], a[:, offset:] + both[:, :width]], dim=1)
        b = ctx.cat([b[:, :offset], both[:, width:]], dim=1)
        offset *= 2
    first = ctx.public(torch.ones((groups, 1), dtype=torch.int64))
    return ctx.cat([first, a + b], dim=1)  # shown_0 = 1


def _quantiles(ctx: MpcContext, layout: Layout, censored: bool, n: Secret, left: Secret,
               exits: Secret, curve: Secret, bracket: Secret
               ) -> tuple[Secret, Secret, Secret]:
    """(bin, value, whether the curve points around the bin are shown) of every quantile,
    each of shape (groups, Q)."""
    groups, m = curve.shape
    q = len(layout.quantiles)
    d = QUANTILE_DENOMINATOR
    shape = (groups, q, m)
    # Public operands at the secrets' full shape: CrypTen adds a public tensor to one
    # party's share only, so it must not broadcast.
    p = torch.tensor(layout.quantiles, dtype=torch.int64).view(1, q, 1).expand(shape)
    widths = torch.tensor(layout.widths(), dtype=torch.int64).view(1, 1, m).expand(shape)

    def per_quantile(x: Secret) -> Secret:  # (groups, m) -> (groups, Q, m)
        return x.unsqueeze(1).expand(groups, q, m)

    if censored:
        # reached: S(e_{k+1}) <= 1 - q;  interpolate in S between the bin's edges.
        threshold = SCALE * (d - p)  # public
        reached = threshold - per_quantile(curve) * d
        before = ctx.cat([ctx.public(torch.full((groups, 1), SCALE, dtype=torch.int64)),
                          curve[:, : m - 1]], dim=1)  # S(e_k), k = 0..m-1
        numer = (per_quantile(before) * d - threshold) * widths
        denom = per_quantile(before - curve) * d
    else:
        # reached: F_k >= q n;  interpolate in the cumulative count inside the bin.
        counts = n.unsqueeze(1).unsqueeze(2).expand(*shape) * p
        reached = per_quantile(left[:, :m]) * d - counts
        numer = (counts - per_quantile(left[:, :m] - exits[:, :m]) * d) * widths
        denom = per_quantile(exits[:, :m]) * d
    hit = reached.nonnegative()  # (groups, Q, m), a suffix of ones along the bins
    # one-hot of the quantile's bin over k = 0..m (k = m: beyond the last edge)
    steps = [hit[:, :, :1]] + ([hit[:, :, 1:] - hit[:, :, : m - 1]] if m > 1 else [])
    onehot = ctx.cat([*steps, 1 - hit[:, :, m - 1:]], dim=2)
    risk = bracket.unsqueeze(1).expand(groups, q, m + 1)
    inside = onehot[:, :, :m]
    picked = ctx.cat([inside.flatten(), inside.flatten(), onehot.flatten()]) * \
        ctx.cat([numer.flatten(), denom.flatten(), risk.flatten()])
    size = groups * q * m
    numer_b, denom_b, risk_b = _split(picked, [size, size, groups * q * (m + 1)])
    numer_b = numer_b.reshape(groups, q, m).sum(2)
    denom_b = denom_b.reshape(groups, q, m).sum(2) + onehot[:, :, m]  # beyond: 0 / 1
    risk_b = risk_b.reshape(groups, q, m + 1).sum(2)
    edges = torch.tensor(layout.edges, dtype=torch.int64).view(1, 1, m + 1)
    low = (onehot * edges.expand(groups, q, m + 1)).sum(2)
    # to the nearest day: floor((2 N + D) / 2 D); the quotient is at most w_b
    bits = max(layout.widths()).bit_length() + 1
    value = low + divide_floor(numer_b * 2 + denom_b, denom_b * 2, bits)
    bin_index = hit.sum(2) * -1 + m
    return bin_index, value, risk_b


def _split(x: Secret, sizes: Sequence[int]) -> list[Secret]:
    out, at = [], 0
    for size in sizes:
        out.append(x[at: at + size])
        at += size
    return out

