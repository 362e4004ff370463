"""The engine interface protocols use: secret-shared integers and the few operations on them.

Protocols see `Secret` and `MpcContext`, never CrypTen or the network. All values
are integers encoded with precision 0 (CrypTen's fixed point would make
two-party truncation probabilistic), so opened counts are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mpc.engine.crypten_compat import load_crypten
from mpc.errors import EngineError

load_crypten()
import crypten  # noqa: E402
from crypten.mpc import MPCTensor  # noqa: E402
from crypten.mpc.primitives import ArithmeticSharedTensor  # noqa: E402
from crypten.mpc.ptype import ptype as Ptype  # noqa: E402

Public = int | torch.Tensor


class Secret:
    """An additively secret-shared int64 tensor; arithmetic never reveals anything."""

    __slots__ = ("_x",)

    def __init__(self, x: MPCTensor) -> None:
        if x.encoder.scale != 1:
            raise EngineError("secrets are integers (precision 0)")
        self._x = x

    @staticmethod
    def _raw(other: Secret | Public) -> Any:
        return other._x if isinstance(other, Secret) else other

    def __add__(self, other: Secret | Public) -> Secret:
        return Secret(self._x + self._raw(other))

    __radd__ = __add__

    def __sub__(self, other: Secret | Public) -> Secret:
        return Secret(self._x - self._raw(other))

    def __rsub__(self, other: Public) -> Secret:
        return Secret(-self._x + other)

    def __mul__(self, other: Secret | Public) -> Secret:
        """Secret x secret: one Beaver multiplication (a round and a dealer triple)."""
        return Secret(self._x * self._raw(other))

    __rmul__ = __mul__

    def __getitem__(self, index: Any) -> Secret:
        return Secret(self._x[index])

    def __matmul__(self, other: Secret) -> Secret:
        """Secret matrix product: one Beaver matmul (a dealer triple of matching shapes)."""
        return Secret(self._x.matmul(other._x))

    def t(self) -> Secret:
        return Secret(self._x.t())

    def flatten(self) -> Secret:
        return Secret(self._x.flatten())

    @property
    def shape(self) -> torch.Size:
        size: torch.Size = self._x.size()
        return size

    def sum(self, dim: int | None = None) -> Secret:
        return Secret(self._x.sum() if dim is None else self._x.sum(dim))

    def cumsum(self, dim: int) -> Secret:
        """Running sums along `dim` (local: no communication)."""
        return Secret(self._x.cumsum(dim))

    def reshape(self, *shape: int) -> Secret:
        return Secret(self._x.reshape(*shape))

    def unsqueeze(self, dim: int) -> Secret:
        return Secret(self._x.unsqueeze(dim))

    def expand(self, *shape: int) -> Secret:
        return Secret(self._x.expand(*shape))

    def shift_right(self, bits: int, width: int) -> Secret:
        """floor(x / 2**bits), exactly, for 0 <= x < 2**(bits + width): the shares are
        converted to XOR sharing, shifted there (local) and converted back keeping `width`
        bits. The cost of one comparison; CrypTen's own division by a public integer is
        probabilistic with two parties."""
        if bits < 0 or not 0 < width <= 62 - bits:
            raise EngineError(f"cannot shift by {bits} keeping {width} bits")
        binary = self._x._to_ptype(Ptype.binary)
        binary.share >>= bits
        result = binary._to_ptype(Ptype.arithmetic, precision=0, bits=width)
        result.encoder._scale = 1
        return Secret(result)

    def nonnegative(self) -> Secret:
        """1 where the value is >= 0, else 0 (a secret comparison: ~50 rounds, batched)."""
        result = self._x >= 0
        result.encoder._scale = 1
        return Secret(result)

    @property
    def share(self) -> torch.Tensor:
        """This party's share (uniformly random on its own)."""
        share: torch.Tensor = self._x.share
        return share


class MpcContext:
    """What a protocol may do in a job: input, compute, and release to named recipients."""

    def __init__(self, rank: int, parties: Sequence[str], job_id: str) -> None:
        self.rank = rank
        self.parties = list(parties)
        self.world_size = len(self.parties)
        self.job_id = job_id

    def share(self, local: torch.Tensor | None, src: int, shape: Sequence[int]) -> Secret:
        """Party `src` inputs `local` (every other party passes None); no communication."""
        if (self.rank == src) != (local is not None):
            raise EngineError("exactly the source party provides the input tensor")
        if local is not None:
            if tuple(local.shape) != tuple(shape) or local.dtype != torch.int64:
                raise EngineError(f"input must be int64 of shape {tuple(shape)}")
            tensor = local
        else:
            tensor = torch.zeros(tuple(shape), dtype=torch.int64)
        return Secret(MPCTensor(tensor, src=src, precision=0))

    def share_from_each(self, local: torch.Tensor) -> list[Secret]:
        """Every party inputs a tensor of the same public shape; one Secret per party."""
        return [self.share(local if r == self.rank else None, r, local.shape)
                for r in range(self.world_size)]

    @staticmethod
    def stack(secrets: Sequence[Secret], dim: int = 0) -> Secret:
        return Secret(crypten.stack([s._x for s in secrets], dim=dim))

    @staticmethod
    def cat(secrets: Sequence[Secret], dim: int = 0) -> Secret:
        return Secret(crypten.cat([s._x for s in secrets], dim=dim))

    @staticmethod
    def from_shares(share: torch.Tensor) -> Secret:
        """A secret whose shares the parties already hold (this party's is `share`)."""
        if share.dtype != torch.int64:
            raise EngineError("shares are int64")
        return Secret(MPCTensor.from_shares(share, precision=0))

    def public(self, value: torch.Tensor) -> Secret:
        """A value every party knows, as a secret (a fresh zero sharing plus the value)."""
        zero = ArithmeticSharedTensor.PRZS(tuple(value.shape))
        if self.rank == 0:
            zero.share += value.to(torch.int64)
        return Secret(MPCTensor.from_shares(zero.share, precision=0))

    @staticmethod
    def rerandomize(x: Secret) -> Secret:
        """The same secret with shares refreshed by a zero sharing: whoever adds the shares
        learns `x` and nothing about how it was computed."""
        zero = ArithmeticSharedTensor.PRZS(x.shape)
        return Secret(MPCTensor.from_shares(x.share + zero.share, precision=0))

    def release_share(self, x: Secret) -> torch.Tensor:
        """This party's share of `x`, to hand to a recipient outside the computation."""
        return self.rerandomize(x).share

    def open_to(self, x: Secret, dst: int) -> torch.Tensor | None:
        """Open `x` to party `dst` only; every other party gets None."""
        opened = self.rerandomize(x)._x.reveal(dst=dst)
        return opened if self.rank == dst else None
