"""CrypTen's Communicator interface carried over the job's PeerMesh (gRPC, mutual TLS).

Collectives are built from point-to-point messages. all_reduce, the operation
CrypTen uses for every opening (about 48 rounds for a comparison), takes one
round of all-to-all messages for small tensors and, for large ones, a
reduce-scatter plus all-gather (two rounds, each party sending 2(N-1)/N of the
tensor instead of N-1 copies of it).

CrypTen asks its communicator class for *the* instance; ours answers with the calling
thread's (see crypten_compat, 5.), so sessions on different threads never share one.

Results never alias the caller's input, as with torch.distributed (whose collectives write
into tensors of their own): updating the input in place after a collective (`tensor += 1`
after all_gather in CrypTen's test_mutation) must not change a result already returned.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch.distributed import ReduceOp

from mpc.engine.channels import Mesh
from mpc.engine.crypten_compat import load_crypten
from mpc.errors import EngineError, ProtocolAbort

load_crypten()
from crypten.communicator.communicator import Communicator  # noqa: E402
from crypten.communicator.communicator import _logging as _crypten_logging  # noqa: E402

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _logging(method: _Method) -> _Method:
    """CrypTen's decorator that counts a communicator call's rounds and bytes, typed: the
    method it wraps keeps its signature (CrypTen's functools.wraps)."""
    logged: _Method = _crypten_logging(method)
    return logged

# Above this many elements, all_reduce switches to reduce-scatter + all-gather.
SPLIT_ALL_REDUCE_ELEMENTS = 32 * 1024


def _combine(tensors: list[torch.Tensor], op: Any) -> torch.Tensor:
    result = tensors[0].clone()
    for t in tensors[1:]:
        if op == ReduceOp.SUM:
            result += t  # int64 addition wraps: arithmetic in Z_2^64
        elif op == ReduceOp.BXOR:
            result ^= t
        else:
            raise EngineError(f"reduce operation {op} is not supported")
    return result


class _Done:
    """What isend returns: the message is queued, so waiting is immediate."""

    def wait(self) -> None:
        return None

    def is_completed(self) -> bool:
        return True


class _PendingRecv:
    """What irecv returns: wait() receives into the caller's tensor, as gloo does."""

    def __init__(self, comm: GrpcCommunicator, tensor: torch.Tensor, src: int) -> None:
        self._comm, self._tensor, self._src = comm, tensor, src
        self._done = False

    def wait(self) -> None:
        if not self._done:
            self._tensor.data.copy_(self._comm.recv(self._tensor, self._src))
            self._done = True

    def is_completed(self) -> bool:
        return self._done


class _ThreadState(threading.local):
    instance: GrpcCommunicator | None = None
    pending_mesh: Mesh | None = None  # set by the engine session before crypten.init()


class GrpcCommunicator(Communicator):
    BYTES_PER_ELEMENT = 8
    _state = _ThreadState()

    def __init__(self, mesh: Mesh) -> None:
        self.mesh = mesh
        self.rank = mesh.rank
        self.world_size = len(mesh.parties)
        self._name = mesh.parties[mesh.rank]
        self.ttp_initialized = False
        self.reset_communication_stats()

    # ---- life cycle (called by crypten.init / crypten.uninit, on the session's thread) ------
    @classmethod
    def prepare(cls, mesh: Mesh | None) -> None:
        """The mesh the next crypten.init() on this thread runs over (None: forget it)."""
        cls._state.pending_mesh = mesh

    @classmethod
    def is_initialized(cls) -> bool:
        return cls._state.instance is not None

    @classmethod
    def get(cls) -> GrpcCommunicator | None:
        return cls._state.instance

    @classmethod
    def initialize(cls, rank: int = 0, world_size: int = 1, init_ttp: bool = False) -> None:
        if init_ttp:
            raise EngineError("CrypTen's TTP process is not used: the dealer serves tuples")
        mesh = cls._state.pending_mesh
        if mesh is None:
            raise EngineError("crypten.init() called outside a job session")
        cls._state.instance = cls(mesh)

    @classmethod
    def shutdown(cls) -> None:
        cls._state.instance = None

    # ---- point to point -------------------------------------------------------------------
    def _check_peer(self, rank: int | None) -> int:
        if rank is None or not (0 <= rank < self.world_size) or rank == self.rank:
            raise ProtocolAbort(f"invalid peer rank {rank}")
        return rank

    @_logging
    def send(self, tensor: torch.Tensor, dst: int) -> None:
        self.mesh.send_tensor(self._check_peer(dst), tensor, "send")

    @_logging
    def recv(self, tensor: torch.Tensor, src: int | None = None) -> torch.Tensor:
        peer = self._check_peer(src)
        result = self.mesh.recv_tensor(peer, "send")
        if result.shape != tensor.shape or result.dtype != tensor.dtype:
            raise ProtocolAbort(
                f"party {self.mesh.parties[peer]} sent {result.dtype}{tuple(result.shape)}, "
                f"expected {tensor.dtype}{tuple(tensor.shape)}"
            )
        return result

    @_logging
    def isend(self, tensor: torch.Tensor, dst: int) -> _Done:
        self.mesh.send_tensor(self._check_peer(dst), tensor, "send")
        return _Done()

    @_logging
    def irecv(self, tensor: torch.Tensor, src: int | None = None) -> _PendingRecv:
        return _PendingRecv(self, tensor, self._check_peer(src))

    # ---- collectives ----------------------------------------------------------------------
    def _others(self) -> list[int]:
        return [r for r in range(self.world_size) if r != self.rank]

    def _exchange(self, tensor: torch.Tensor, tag: str) -> list[torch.Tensor]:
        """Send `tensor` to every peer; return everyone's tensor in rank order (this party's
        own a copy: see the module's docstring)."""
        for r in self._others():
            self.mesh.send_tensor(r, tensor, tag)
        return [tensor.clone() if r == self.rank else self.mesh.recv_tensor(r, tag)
                for r in range(self.world_size)]

    @_logging
    def scatter(self, scatter_list: list[torch.Tensor], src: int, size: Any = None,
                device: Any = None) -> torch.Tensor:
        if self.rank == src:
            for r in self._others():
                self.mesh.send_tensor(r, scatter_list[r], "scatter")
            return scatter_list[self.rank].clone()
        return self.mesh.recv_tensor(src, "scatter")

    def _flatten(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        dtypes = {t.dtype for t in tensors}
        if len(dtypes) != 1:
            raise EngineError("batched tensors must share a dtype")
        return torch.cat([t.reshape(-1) for t in tensors])

    @staticmethod
    def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
        out, offset = [], 0
        for t in like:
            n = t.numel()
            out.append(flat[offset: offset + n].reshape(t.shape))
            offset += n
        return out

    @_logging
    def reduce(self, input: Any, dst: int, op: Any = ReduceOp.SUM,
               batched: bool = False) -> Any:
        flat = self._flatten(input) if batched else input
        if self.rank != dst:
            self.mesh.send_tensor(dst, flat, "reduce")
            return None
        parts = [flat if r == self.rank else self.mesh.recv_tensor(r, "reduce")
                 for r in range(self.world_size)]
        result = _combine(parts, op)
        return self._unflatten(result, input) if batched else result

    @_logging
    def all_reduce(self, input: Any, op: Any = ReduceOp.SUM, batched: bool = False) -> Any:
        flat = self._flatten(input) if batched else input
        if flat.numel() * (self.world_size - 1) <= SPLIT_ALL_REDUCE_ELEMENTS:
            result = _combine(self._exchange(flat, "all_reduce"), op)
        else:
            result = self._split_all_reduce(flat, op)
        return self._unflatten(result, input) if batched else result

    def _split_all_reduce(self, tensor: torch.Tensor, op: Any) -> torch.Tensor:
        """Reduce-scatter then all-gather: party r reduces and redistributes slice r."""
        slices = torch.tensor_split(tensor.reshape(-1), self.world_size)
        for r in self._others():
            self.mesh.send_tensor(r, slices[r], "all_reduce/scatter")
        mine = _combine([slices[self.rank] if r == self.rank
                         else self.mesh.recv_tensor(r, "all_reduce/scatter")
                         for r in range(self.world_size)], op)
        reduced = self._exchange(mine, "all_reduce/gather")
        return torch.cat(reduced).reshape(tensor.shape)

    @_logging
    def gather(self, tensor: torch.Tensor, dst: int) -> list[Any]:
        if self.rank != dst:
            self.mesh.send_tensor(dst, tensor, "gather")
            return [None]
        return [tensor.clone() if r == self.rank else self.mesh.recv_tensor(r, "gather")
                for r in range(self.world_size)]

    @_logging
    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        return self._exchange(tensor, "all_gather")

    @_logging
    def broadcast(self, input: Any, src: int, group: Any = None, batched: bool = False) -> Any:
        if group is not None:
            raise EngineError("process groups are not supported")
        tensors = input if batched else [input]
        flat = self._flatten(tensors)
        if self.rank == src:
            for r in self._others():
                self.mesh.send_tensor(r, flat, "broadcast")
        else:
            received = self.mesh.recv_tensor(src, "broadcast")
            if received.shape != flat.shape:
                raise ProtocolAbort(f"broadcast from party {self.mesh.parties[src]} has "
                                    f"{received.numel()} elements, expected {flat.numel()}")
            for t, value in zip(tensors, self._unflatten(received, tensors), strict=True):
                t.data.copy_(value)
        return input

    @_logging
    def barrier(self) -> None:
        self._exchange(torch.zeros(0, dtype=torch.int64), "barrier")

    # ---- objects (sizes only: see transport.codec) -----------------------------------------
    @_logging
    def send_obj(self, obj: Any, dst: int, group: Any = None) -> None:
        self.mesh.send_object(self._check_peer(dst), obj, "object")

    @_logging
    def recv_obj(self, src: int, group: Any = None) -> Any:
        return self.mesh.recv_object(self._check_peer(src), "object")

    @_logging
    def broadcast_obj(self, obj: Any, src: int, group: Any = None) -> Any:
        if self.rank == src:
            for r in self._others():
                self.mesh.send_object(r, obj, "broadcast_obj")
            return obj
        return self.mesh.recv_object(src, "broadcast_obj")

    # ---- identity -------------------------------------------------------------------------
    def get_world_size(self) -> int:
        return self.world_size

    def get_rank(self) -> int:
        return self.rank

    def set_name(self, name: str) -> None:
        self._name = name

    def get_name(self) -> str:
        return self._name

    def get_ttp_rank(self) -> int:
        raise EngineError("there is no TTP process: the dealer serves correlated randomness")
