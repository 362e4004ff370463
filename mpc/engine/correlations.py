"""Correlated randomness from a dealer: the math both sides share.

The construction is CrypTen's trusted third party, with its Mersenne Twister
generators replaced by ChaCha20 streams: party i and the dealer share a 256-bit
seed s_i. For request number `seq`, party i derives every component of its share
from s_i itself; only party 0's last component (the "correction" that makes the
shares sum to the right value) comes from the dealer, which can compute every
party's streams. Parties other than 0 never talk to the dealer after joining.

  additive triple  a, b, c = op(a, b)        op in {mul, matmul} or a convolution (conv1d,
                                             conv2d, conv_transpose1d, conv_transpose2d with
                                             their stride, padding, dilation, groups and
                                             output_padding as typed fields)
  square           r, r2 = r * r
  binary triple    a, b, c = a & b           (XOR sharing)
  wraps            r, theta_r = wraps of the shares of r
  B2A              rB (one bit, XOR sharing), rA = the same bit, additive sharing
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, TypeGuard

import torch

from mpc.engine.rng import KeyStream, derive_key

OPS = ("additive_triple", "square", "binary_triple", "wraps", "b2a")
# Convolutions CrypTen's Beaver protocol asks triples for, by their number of spatial dims.
CONV_OPS = {"conv1d": 1, "conv2d": 2, "conv_transpose1d": 1, "conv_transpose2d": 2}
TORCH_OPS = ("mul", "matmul", *CONV_OPS)
MAX_ELEMENTS = 64 * 1024 * 1024  # one request: at most 512 MiB of int64
MAX_CONV_ARGUMENT = 1024  # stride, padding, dilation, output_padding and groups
# One value per spatial dimension, torch's defaults; output_padding for transposed ones only.
_PER_DIMENSION = {"stride": 1, "padding": 0, "dilation": 1, "output_padding": 0}


@dataclass(frozen=True)
class Request:
    seq: int
    op: str
    size0: tuple[int, ...]
    size1: tuple[int, ...] = ()
    torch_op: str = ""
    # Convolutions only (see conv_arguments), empty for every other operation.
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 0
    output_padding: tuple[int, ...] = ()

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
        if self.torch_op in CONV_OPS:
            self._validate_conv_arguments()
        elif self.conv_kwargs():
            raise ValueError(f"{self.torch_op or self.op} takes no convolution arguments, got "
                             f"{', '.join(self.conv_kwargs())}")
        if self.op not in ("additive_triple", "binary_triple") and self.size1:
            raise ValueError(f"{self.op} takes one size")
        for size in (self.size0, self.size1):
            if any(d < 0 for d in size) or len(size) > 8:
                raise ValueError(f"invalid shape {size}")
        elements = sum(math.prod(s) for s in (self.size0, self.output_size(), self.size1))
        if elements > MAX_ELEMENTS:
            raise ValueError(f"{self.torch_op or self.op} request too large: {elements} "
                             f"elements (at most {MAX_ELEMENTS})")

    def _validate_conv_arguments(self) -> None:
        op, dims = self.torch_op, CONV_OPS[self.torch_op]
        transposed = op.startswith("conv_transpose")
        given = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                 "output_padding": self.output_padding}
        for name, values in given.items():
            wanted = dims if transposed or name != "output_padding" else 0
            if not wanted and values:
                raise ValueError(f"{op} takes no {name}")
            if len(values) != wanted:
                raise ValueError(f"{op}: {name} needs {wanted} values, got {len(values)}")
            low = 1 if name in ("stride", "dilation") else 0
            if any(not low <= v <= MAX_CONV_ARGUMENT for v in values):
                raise ValueError(f"{op}: {name} must be integers in {low}..{MAX_CONV_ARGUMENT}, "
                                 f"got {values}")
        if not 1 <= self.groups <= MAX_CONV_ARGUMENT:
            raise ValueError(f"{op}: groups must be an integer in 1..{MAX_CONV_ARGUMENT}, "
                             f"got {self.groups}")
        for out_pad, stride, dilation in zip(self.output_padding, self.stride, self.dilation,
                                             strict=False):
            if out_pad >= max(stride, dilation):  # torch's own rule
                raise ValueError(f"{op}: output_padding {self.output_padding} must be smaller "
                                 "than the stride or the dilation")

    def conv_kwargs(self) -> dict[str, Any]:
        """The convolution's keyword arguments as torch takes them (only those given)."""
        given: dict[str, Any] = {"stride": self.stride, "padding": self.padding,
                                 "dilation": self.dilation, "groups": self.groups,
                                 "output_padding": self.output_padding}
        return {k: v for k, v in given.items() if v}

    def output_size(self) -> tuple[int, ...]:
        """Shape of the dealer's correction (the last component)."""
        if self.op == "additive_triple" and self.torch_op in CONV_OPS:
            return conv_shape(self.torch_op, self.size0, self.size1, self.stride, self.padding,
                              self.dilation, self.groups, self.output_padding)
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


def conv_arguments(torch_op: str, kwargs: Mapping[str, object]) -> dict[str, Any]:
    """CrypTen's keyword arguments of a triple for `torch_op` as Request fields: for a
    convolution every one explicit (torch's defaults filled in, one value per spatial
    dimension), so that the same convolution is always the same request; nothing for mul and
    matmul. Unknown operations and keywords, and values that are not integers, are refused."""
    if torch_op not in TORCH_OPS:
        raise ValueError(f"additive triples are served for {TORCH_OPS}, not {torch_op!r}")
    if torch_op not in CONV_OPS:
        if kwargs:
            raise ValueError(f"{torch_op} takes no keyword arguments, got {', '.join(kwargs)}")
        return {}
    dims, transposed = CONV_OPS[torch_op], torch_op.startswith("conv_transpose")
    per_dimension = [k for k in _PER_DIMENSION if k != "output_padding" or transposed]
    known = [*per_dimension, "groups"]
    for name in kwargs:
        if name not in known:
            raise ValueError(f"{torch_op} takes no keyword argument {name!r} "
                             f"(known: {', '.join(known)})")
    fields: dict[str, Any] = {"groups": _integer(torch_op, "groups", kwargs.get("groups", 1))}
    for name in per_dimension:
        value = kwargs.get(name, _PER_DIMENSION[name])
        fields[name] = (tuple(_integer(torch_op, name, v) for v in value)
                        if isinstance(value, tuple | list)
                        else (_integer(torch_op, name, value),) * dims)
    return fields


def _integer(torch_op: str, name: str, value: object) -> int:
    # bool is an int to Python, not to a convolution; strings ("same") are torch-only
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{torch_op}: {name} takes integers, got {value!r}")
    return value


def conv_shape(torch_op: str, x: tuple[int, ...], w: tuple[int, ...], stride: tuple[int, ...],
               padding: tuple[int, ...], dilation: tuple[int, ...], groups: int,
               output_padding: tuple[int, ...] = ()) -> tuple[int, ...]:
    """torch's result shape of a convolution (input x, kernel w), in plain Python: the dealer
    knows the size of a request before it computes anything."""
    dims = CONV_OPS[torch_op]
    transposed = torch_op.startswith("conv_transpose")
    if len(w) != dims + 2 or len(x) not in (dims + 1, dims + 2):
        raise ValueError(f"{torch_op} needs a kernel of {dims + 2} dimensions and an input of "
                         f"{dims + 1} or {dims + 2}, got {w} and {x}")
    if any(d < 1 for d in (*x, *w)):
        raise ValueError(f"{torch_op}: empty dimensions in {x} or {w}")
    batch, channels, spatial = x[:-dims - 1], x[-dims - 1], x[-dims:]
    if transposed:  # kernel (in, out / groups, *k)
        fits, out_channels = channels == w[0] and w[0] % groups == 0, w[1] * groups
    else:  # kernel (out, in / groups, *k)
        fits, out_channels = channels == w[1] * groups and w[0] % groups == 0, w[0]
    if not fits:
        raise ValueError(f"{torch_op}: input {x} and kernel {w} do not combine with "
                         f"groups={groups}")
    out = []
    for i, length in enumerate(spatial):
        span = dilation[i] * (w[2 + i] - 1)
        if transposed:
            n = (length - 1) * stride[i] - 2 * padding[i] + span + output_padding[i] + 1
        else:
            n = (length + 2 * padding[i] - span - 1) // stride[i] + 1
        if n < 1:
            raise ValueError(f"{torch_op}: kernel {w} does not fit input {x} with "
                             f"padding {padding} and dilation {dilation}")
        out.append(n)
    return (*batch, out_channels, *out)


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
        # int64 arithmetic wraps: the convolution (like mul and matmul) is in Z_2^64
        secret: torch.Tensor = getattr(torch, req.torch_op)(a, b, **req.conv_kwargs())
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
