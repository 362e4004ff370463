"""CrypTen's TupleProvider backed by the dealer (see correlations.py for the construction)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mpc.engine.correlations import Request, conv_arguments, is_complete, local_components
from mpc.engine.crypten_compat import load_crypten
from mpc.engine.rng import KeyStream, as_size
from mpc.errors import EngineError

load_crypten()
from crypten.mpc.primitives import ArithmeticSharedTensor, BinarySharedTensor  # noqa: E402
from crypten.mpc.provider.provider import TupleProvider  # noqa: E402

Fetch = Callable[[Request], torch.Tensor]


@dataclass(frozen=True)
class LedgerEntry:
    """What a party records of each correlation it consumed (never the values)."""

    seq: int
    op: str
    shape: tuple[int, ...]


class DealerProvider(TupleProvider):
    NAME = "DEALER"

    def __init__(self) -> None:
        super().__init__()
        self._rank: int | None = None
        self._stream: KeyStream | None = None
        self._fetch: Fetch | None = None
        self.ledger: list[LedgerEntry] = []

    def bind(self, rank: int, stream: KeyStream, fetch: Fetch | None) -> None:
        """Start serving one job: party 0 needs `fetch` (the dealer), the others do not."""
        if rank == 0 and fetch is None:
            raise EngineError("party 0 needs the dealer to fetch corrections")
        self._rank, self._stream, self._fetch = rank, stream, fetch
        self.ledger = []

    def unbind(self) -> None:
        self._rank = self._stream = self._fetch = None

    @property
    def requests(self) -> int:
        return len(self.ledger)

    def _components(self, op: str, size0: Any, size1: Any = (), torch_op: str = "",
                    device: Any = None, conv: dict[str, Any] | None = None
                    ) -> list[torch.Tensor]:
        if self._stream is None or self._rank is None:
            raise EngineError("no job session: the dealer provider is not bound")
        if device is not None and torch.device(device).type != "cpu":
            raise EngineError("only CPU tensors are supported")
        req = Request(seq=len(self.ledger), op=op, size0=as_size(size0),
                      size1=as_size(size1) if size1 != () else (), torch_op=torch_op,
                      **(conv or {}))
        try:
            req.validate()
        except ValueError as exc:
            raise EngineError(f"correlation request refused: {exc}") from None
        parts = local_components(req, self._stream, self._rank)
        if self._rank == 0:
            assert self._fetch is not None
            parts[-1] = self._fetch(req)
        if not is_complete(parts):
            raise EngineError(f"correlation request {req.seq} ({op}) is missing a component")
        self.ledger.append(LedgerEntry(req.seq, op, req.output_size()))
        return parts

    # ---- the five correlations CrypTen asks for ----------------------------------------------
    def generate_additive_triple(self, size0: Any, size1: Any, op: str, device: Any = None,
                                 *args: Any, **kwargs: Any) -> tuple[Any, Any, Any]:
        # CrypTen passes a convolution's arguments by keyword; they become typed request
        # fields the dealer checks again, so both sides compute the same convolution.
        if args:
            raise EngineError(f"additive triples for {op} take keyword arguments only, "
                              f"got {len(args)} positional")
        try:
            conv = conv_arguments(op, kwargs)
        except ValueError as exc:
            raise EngineError(f"correlation request refused: {exc}") from None
        a, b, c = self._components("additive_triple", size0, size1, op, device, conv)
        return tuple(ArithmeticSharedTensor.from_shares(t, precision=0) for t in (a, b, c))

    def square(self, size: Any, device: Any = None) -> tuple[Any, Any]:
        r, r2 = self._components("square", size, device=device)
        return (ArithmeticSharedTensor.from_shares(r, precision=0),
                ArithmeticSharedTensor.from_shares(r2, precision=0))

    def generate_binary_triple(self, size0: Any, size1: Any,
                               device: Any = None) -> tuple[Any, Any, Any]:
        a, b, c = self._components("binary_triple", size0, size1, device=device)
        return tuple(BinarySharedTensor.from_shares(t) for t in (a, b, c))

    def wrap_rng(self, size: Any, device: Any = None) -> tuple[Any, Any]:
        r, theta = self._components("wraps", size, device=device)
        return (ArithmeticSharedTensor.from_shares(r, precision=0),
                ArithmeticSharedTensor.from_shares(theta, precision=0))

    def B2A_rng(self, size: Any, device: Any = None) -> tuple[Any, Any]:  # noqa: N802
        r_binary, r_arith = self._components("b2a", size, device=device)
        return (ArithmeticSharedTensor.from_shares(r_arith, precision=0),
                BinarySharedTensor.from_shares(r_binary))
