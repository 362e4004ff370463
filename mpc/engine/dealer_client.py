"""A party's typed client for the dealer service (retries are safe: requests are idempotent)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar, TypeVarTuple

import grpc
import torch

from mpc.audit.log import Head
from mpc.engine.correlations import Request
from mpc.errors import DealerError
from mpc.proto import common_pb2, dealer_pb2, dealer_pb2_grpc
from mpc.transport import codec
from mpc.transport.messages import tensor_from_chunks
from mpc.transport.tls import TlsIdentity, secure_channel
from mpc.transport.validate import head_problem

OP_TO_PROTO = {
    "additive_triple": dealer_pb2.ADDITIVE_TRIPLE,
    "square": dealer_pb2.SQUARE,
    "binary_triple": dealer_pb2.BINARY_TRIPLE,
    "wraps": dealer_pb2.WRAPS,
    "b2a": dealer_pb2.B2A,
}
PROTO_TO_OP = {v: k for k, v in OP_TO_PROTO.items()}
_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_T = TypeVar("_T")
_Args = TypeVarTuple("_Args")


class DealerCalls(Protocol):
    """The dealer service's calls (protos/mpc/proto/dealer.proto), typed: what
    dealer_pb2_grpc.DealerStub, which protoc generates without annotations, provides."""

    Join: grpc.UnaryUnaryMultiCallable[dealer_pb2.JoinRequest, dealer_pb2.JoinReply]
    Correlation: grpc.UnaryStreamMultiCallable[dealer_pb2.CorrelationRequest, common_pb2.Tensor]
    Leave: grpc.UnaryUnaryMultiCallable[dealer_pb2.LeaveRequest, dealer_pb2.LeaveReply]
    SubmitPoints: grpc.StreamUnaryMultiCallable[dealer_pb2.PointsChunk, dealer_pb2.SubmitReply]
    FetchOutcome: grpc.UnaryStreamMultiCallable[dealer_pb2.FetchRequest, common_pb2.Tensor]


def request_to_proto(job_id: str, req: Request) -> dealer_pb2.CorrelationRequest:
    return dealer_pb2.CorrelationRequest(
        job_id=job_id, seq=req.seq, op=OP_TO_PROTO[req.op], size0=req.size0,
        size1=req.size1, torch_op=req.torch_op, stride=req.stride, padding=req.padding,
        dilation=req.dilation, groups=req.groups, output_padding=req.output_padding,
    )


def request_from_proto(msg: dealer_pb2.CorrelationRequest) -> Request:
    if msg.op not in PROTO_TO_OP:
        raise ValueError(f"operation {msg.op} is not served")
    return Request(seq=msg.seq, op=PROTO_TO_OP[msg.op], size0=tuple(msg.size0),
                   size1=tuple(msg.size1), torch_op=msg.torch_op, stride=tuple(msg.stride),
                   padding=tuple(msg.padding), dilation=tuple(msg.dilation), groups=msg.groups,
                   output_padding=tuple(msg.output_padding))


class DealerClient:
    def __init__(self, identity: TlsIdentity, address: str, dealer_name: str, job_id: str,
                 *, timeout_s: float = 120.0, retries: int = 3) -> None:
        self.dealer_name = dealer_name
        self.job_id = job_id
        self.timeout_s = timeout_s
        self.retries = retries
        self._channel = secure_channel(identity, address, dealer_name)
        self._stub: DealerCalls = dealer_pb2_grpc.DealerStub(self._channel)

    def _call(self, what: str, fn: Callable[[*_Args], _T], *args: *_Args) -> _T:
        for attempt in range(self.retries + 1):
            try:
                return fn(*args)
            except grpc.RpcError as exc:
                if exc.code() in _RETRYABLE and attempt < self.retries:
                    time.sleep(0.2 * 2**attempt)
                    continue
                raise DealerError(
                    f"dealer {self.dealer_name}: {what} failed ({exc.code().name}: "
                    f"{exc.details()})"
                ) from None
        raise AssertionError("unreachable")

    def join(self, spec_sha256: str, parties: Sequence[str], rank: int) -> bytes:
        # No wait_for_ready: a dealer that is down, or a server that is not the dealer,
        # fails the join (after the retries) instead of holding the job until its deadline.
        reply = self._call("join", lambda: self._stub.Join(
            dealer_pb2.JoinRequest(job_id=self.job_id, spec_sha256=spec_sha256,
                                   parties=list(parties), rank=rank),
            timeout=self.timeout_s))
        if len(reply.seed) != 32:
            raise DealerError(f"dealer {self.dealer_name} sent a seed of {len(reply.seed)} bytes")
        return reply.seed

    def correlation(self, req: Request) -> torch.Tensor:
        msg = request_to_proto(self.job_id, req)

        def fetch() -> torch.Tensor:
            chunks = list(self._stub.Correlation(msg, timeout=self.timeout_s))
            return tensor_from_chunks(chunks, f"dealer {self.dealer_name}")

        tensor = self._call(f"request {req.seq} ({req.op})", fetch)
        expected = req.output_size()
        if tuple(tensor.shape) != expected or tensor.dtype != torch.int64:
            raise DealerError(f"dealer {self.dealer_name} answered request {req.seq} with "
                              f"{tensor.dtype}{tuple(tensor.shape)}, expected int64{expected}")
        return tensor

    def submit_points(self, rank: int, list_name: str, points: bytes) -> None:
        """Hand the dealer a fully blinded list (linkage and overlap), in chunks."""
        count = len(points) // 32

        def chunks() -> Iterator[dealer_pb2.PointsChunk]:
            parts = codec.chunk(points)
            for k, part in enumerate(parts):
                yield dealer_pb2.PointsChunk(
                    job_id=self.job_id if k == 0 else "", list=list_name if k == 0 else "",
                    rank=rank, count=count if k == 0 else 0, points=bytes(part))

        self._call(f"handing over list {list_name}",
                   lambda: self._stub.SubmitPoints(chunks(), timeout=self.timeout_s))

    def fetch_outcome(self, rank: int, part: str, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor:
        msg = dealer_pb2.FetchRequest(job_id=self.job_id, rank=rank, part=part,
                                      widths=list(widths), pad_to=pad_to)

        def fetch() -> torch.Tensor:
            chunks = list(self._stub.FetchOutcome(msg, timeout=self.timeout_s))
            return tensor_from_chunks(chunks, f"dealer {self.dealer_name}")

        return self._call(f"fetching {part}", fetch)

    def leave(self, rank: int, requests: int) -> Head | None:
        """Leave the job; the dealer's audit log head right after it logged the leave (None
        from a dealer that sends none), for the party to pin in its own log."""
        reply = self._call("leave", lambda: self._stub.Leave(
            dealer_pb2.LeaveRequest(job_id=self.job_id, rank=rank, requests=requests),
            timeout=self.timeout_s))
        if not reply.HasField("head"):
            return None
        h = reply.head
        problem = head_problem(h.member, h.seq, h.hash, h.sig)
        if problem is None and h.member != self.dealer_name:
            problem = f"it names member {h.member!r}"
        if problem:
            raise DealerError(f"dealer {self.dealer_name} sent a malformed log head: {problem}")
        return Head(h.member, h.seq, h.hash, h.sig)

    def close(self) -> None:
        self._channel.close()
