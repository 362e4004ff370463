"""Exact integer arithmetic on shares that the engine does not give directly.

Secrets are integers (precision 0), so a division is built from comparisons: restoring long
division, one batched comparison and one multiplication per bit of the quotient, for every
element at once. A product of fixed-point factors is truncated exactly by `shift_right`.
"""

from __future__ import annotations

from mpc.engine.secret import MpcContext, Secret


def divide_floor(num: Secret, den: Secret, bits: int) -> Secret:
    """floor(num / den) elementwise, for 0 <= num < 2**bits * den and den > 0 (the caller
    guarantees both; elsewhere the result is some value below 2**bits, never a failure
    or a different number of rounds). `bits` rounds of one comparison and one product."""
    if bits < 1:
        raise ValueError("a quotient has at least one bit")
    quotient: Secret | None = None
    times_den: Secret | None = None  # quotient * den, kept so each step needs one product
    for bit in reversed(range(bits)):
        step = den * (1 << bit)
        trial = step if times_den is None else times_den + step
        fits = (num - trial).nonnegative()
        added = fits * step  # secret x secret
        gained = fits * (1 << bit)
        quotient = gained if quotient is None else quotient + gained
        times_den = added if times_den is None else times_den + added
    assert quotient is not None
    return quotient


def prefix_product(ctx: MpcContext, factors: Secret, scale_bits: int) -> Secret:
    """Running products along the last axis of (groups, k) fixed-point factors in
    [0, 2**scale_bits]: out[:, j] = floor-truncated f[:, 0] * ... * f[:, j] / scale**j.
    A Hillis-Steele scan: ceil(log2 k) rounds of one product and one exact truncation.
    Each element carries at most j truncations below the exact product (see the caller's
    error bound)."""
    width = factors.shape[-1]
    out = factors
    offset = 1
    while offset < width:
        joined = (out[:, offset:] * out[:, : width - offset]).shift_right(scale_bits,
                                                                          scale_bits + 1)
        out = ctx.cat([out[:, :offset], joined], dim=1)
        offset *= 2
    return out
