"""Small-cell disclosure control, evaluated on secret shares.

A cell is released when
    value == 0 and zeros are not suppressed, or
    value >= min_cell and at least min_contributors parties have rows in it.
(DisclosureRules.keeps states the same rule in plaintext; tests hold the two together.)
The comparisons for all cells and all rules run as one batched secure comparison.
"""

from __future__ import annotations

from mpc.config.spec import DisclosureRules
from mpc.engine.secret import MpcContext, Secret


def keep_mask(ctx: MpcContext, value: Secret, contributors: Secret | None,
              rules: DisclosureRules) -> Secret:
    """Shares of 1 where the cell may be released, 0 where it is suppressed. Without
    contributor counts (linkage, overlap) the contributor rule must be off."""
    tests = [value - rules.min_cell]
    if rules.min_contributors > 1:  # min_cell >= 1 already implies one contributor
        if contributors is None:
            raise ValueError("the contributor rule needs contributor counts")
        tests.append(contributors - rules.min_contributors)
    if not rules.suppress_zero:
        tests.append(value - 1)
    passed = ctx.stack(tests).nonnegative()
    keep = passed[0]
    if rules.min_contributors > 1:
        keep = keep * passed[1]
    if not rules.suppress_zero:
        keep = keep + (1 - passed[-1])  # value < 1, i.e. zero: counts are never negative
    return keep


def noisy_keep_mask(ctx: MpcContext, noisy: Secret, rules: DisclosureRules) -> Secret:
    """With differentially private noise: release a cell when its noisy value reaches
    min_cell (zeros and negative noisy values included in 'below')."""
    return (noisy - rules.min_cell).nonnegative()
