"""Correlated randomness from a dealer: the math both sides share.

The construction is CrypTen's trusted third party, with its Mersenne Twister
generators replaced by ChaCha20 streams: party i and the dealer share a 256-bit
seed s_i. For request number `seq`, party i derives every component of its share
from s_i itself; only party 0's last component (the "correction" that makes the
shares sum to the right value) comes from the dealer, which can compute every
party's streams. Parties other than 0 never talk to the dealer after joining.

  additive triple  a, b, c = op(a, b)        op in {mul, matmul}
  square           r, r2 = r * r
  binary triple    a, b, c = a & b           (XOR sharing)
  wraps            r, theta_r = wraps of the shares of r
  B2A              rB (one bit, XOR sharing), rA = the same bit, additive sharing
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import TypeGuard

import torch

from mpc.engine.rng import KeyStream, derive_key

OPS = ("additive_triple", "square", "binary_triple", "wraps", "b2a")
TORCH_OPS = ("mul", "matmul")
MAX_ELEMENTS = 64 * 1024 * 1024  # one request: at most 512 MiB of int64


@dataclass(frozen=True)
class Request:
    seq: int
    op: str
    size0: tuple[int, ...]
    size1: tuple[int, ...] = ()
    torch_op: str = ""

    def validate(self) -> None:
        """Refuse anything outside the whitelist before computing a byte."""
        if self.op not in OPS:
            raise ValueError(f"operation {self.op!r} is not served")
        if self.seq < 0:
            raise ValueError("sequence numbers start at 0")
        if self.op == "additive_triple" and self.torch_op not in TORCH_OPS:
            raise ValueError(f"additive triples are served for {TORCH_OPS}, not {self.torch_op!r}")
        if self.op != "additive_triple" and self.torch_op:
            raise ValueError(f"{self.op} takes no torch_op")
        if self.op not in ("additive_triple", "binary_triple") and self.size1:
            raise ValueError(f"{self.op} takes one size")
        for size in (self.size0, self.size1):
            if any(d < 0 for d in size) or len(size) > 8:
                raise ValueError(f"invalid shape {size}")
        sizes = [self.size0, self.output_size(), self.size1]
        if sum(math.prod(s) for s in sizes) > MAX_ELEMENTS:
            raise ValueError("request too large")

    def output_size(self) -> tuple[int, ...]:
        """Shape of the dealer's correction (the last component)."""
        if self.op == "additive_triple" and self.torch_op == "matmul":
            return matmul_shape(self.size0, self.size1)
        if self.op in ("additive_triple", "binary_triple"):
            return broadcast_shape(self.size0, self.size1)
        return self.size0


# Shapes in plain Python: torch.broadcast_shapes imports torch._refs (and sympy) on first
# use, which costs every fresh job process about 0.3 s in the middle of its first comparison.
def broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for x, y in itertools.zip_longest(reversed(a), reversed(b), fillvalue=1):
        if x != y and 1 not in (x, y):
            raise ValueError(f"shapes {a} and {b} do not broadcast")
        out.append(y if x == 1 else x)
    return tuple(reversed(out))


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """torch.matmul's result shape, for 1-D and (batched) 2-D operands."""
    if not a or not b:
        raise ValueError("matmul needs operands of at least one dimension")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise ValueError(f"shapes {a} and {b} do not combine for matmul")
    shape = (*broadcast_shape(a2[:-2], b2[:-2]), a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


def party_stream(seed: bytes, job_id: str, rank: int) -> KeyStream:
    """The stream party `rank` and the dealer both derive from their shared seed."""
    return KeyStream(derive_key(seed, "dealer", job_id, str(rank)))


def local_components(req: Request, stream: KeyStream, rank: int) -> list[torch.Tensor | None]:
    """Every component of party `rank`'s share it derives itself; for party 0 the
    last component is None (it comes from the dealer)."""
    s, op = req.seq, req.op
    last_size = req.output_size()
    if op == "additive_triple":
        parts = [stream.ring_at(req.size0, s, 0), stream.ring_at(req.size1, s, 1)]
    elif op == "binary_triple":
        parts = [stream.bits_at(req.size0, 64, s, 0), stream.bits_at(req.size1, 64, s, 1)]
    elif op == "b2a":
        parts = [stream.bits_at(req.size0, 1, s, 0)]
    else:  # square, wraps
        parts = [stream.ring_at(req.size0, s, 0)]
    last = None if rank == 0 else stream.ring_at(last_size, s, len(parts))
    return [*parts, last]


def count_wraps(shares: Sequence[torch.Tensor]) -> torch.Tensor:
    """How often the running sum of int64 shares over- (+1) or underflows (-1)."""
    wraps = torch.zeros_like(shares[0])
    running = shares[0]
    for share in shares[1:]:
        total = running + share
        wraps += ((running > 0) & (share > 0) & (total < 0)).long()
        wraps -= ((running < 0) & (share < 0) & (total > 0)).long()
        running = total
    return wraps


def is_complete(parts: list[torch.Tensor | None]) -> TypeGuard[list[torch.Tensor]]:
    """Whether a share has every component (party 0's last filled in from the dealer)."""
    return all(p is not None for p in parts)


def _derived(component: torch.Tensor | None) -> torch.Tensor:
    """A component a party derives itself: every one but party 0's last."""
    if component is None:
        raise AssertionError("only party 0's last component comes from the dealer")
    return component


def _total(shares: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum() of the parties' shares (at least one: a tensor, never sum()'s start, 0)."""
    total = sum(shares)
    if not isinstance(total, torch.Tensor):
        raise AssertionError("a sum of no shares")
    return total


def correction(req: Request, streams: Sequence[KeyStream]) -> torch.Tensor:
    """Party 0's last component: what makes the parties' shares a valid correlation."""
    req.validate()
    parts = [local_components(req, stream, rank) for rank, stream in enumerate(streams)]
    others_last = [_derived(p[-1]) for p in parts[1:]]
    if req.op == "additive_triple":
        a = _total(_derived(p[0]) for p in parts)
        b = _total(_derived(p[1]) for p in parts)
        secret: torch.Tensor = getattr(torch, req.torch_op)(a, b)
        return secret - sum(others_last)
    if req.op == "square":
        r = _total(_derived(p[0]) for p in parts)
        return r * r - sum(others_last)
    if req.op == "binary_triple":
        a = reduce(torch.bitwise_xor, (_derived(p[0]) for p in parts))
        b = reduce(torch.bitwise_xor, (_derived(p[1]) for p in parts))
        return reduce(torch.bitwise_xor, others_last, a & b)
    if req.op == "wraps":
        return count_wraps([_derived(p[0]) for p in parts]) - sum(others_last)
    # b2a
    bit = reduce(torch.bitwise_xor, (_derived(p[0]) for p in parts))
    return bit - sum(others_last)
