"""Secure aggregation of N parties' tables with disclosure control inside MPC.

Each party inputs its table and its contributor indicators [rows_i > 0] (sharing
is local: a pseudo-random zero sharing plus the owner's values), the shares are
added, the keep mask is computed on shares, and only (keep, value * keep) is ever
released: no party's table, no unsuppressed total and no suppressed value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mpc.config.spec import DisclosureRules
from mpc.engine.secret import MpcContext, Secret
from mpc.protocols.disclosure import keep_mask, noisy_keep_mask

Phase = Callable[[str], None]


@dataclass(frozen=True)
class Released:
    """Secret shares of what the recipients may open."""

    keep: Secret
    value: Secret


def aggregate(ctx: MpcContext, values: torch.Tensor, rows: torch.Tensor,
              rules: DisclosureRules, phase: Phase = lambda _: None,
              noise: torch.Tensor | None = None) -> Released:
    """With `noise` (this party's share, see noise.py), the noisy total is what the rules
    see: suppression then is post-processing of a differentially private value, so only
    min_cell applies (the contributor rule would look at the raw data)."""
    phase("sharing")
    rows_in = [values, (rows > 0).long()] + ([noise] if noise is not None else [])
    inputs = ctx.share_from_each(torch.stack(rows_in))
    phase("computing")
    total = inputs[0]
    for x in inputs[1:]:
        total = total + x
    value, contributors = total[0], total[1]
    phase("disclosure")
    if noise is not None:
        noisy = value + total[2]
        keep = noisy_keep_mask(ctx, noisy, rules)
        return Released(keep=keep, value=noisy * keep)
    keep = keep_mask(ctx, value, contributors, rules)
    return Released(keep=keep, value=value * keep)
