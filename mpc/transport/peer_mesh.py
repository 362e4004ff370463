"""Ordered, authenticated message channels between the job processes of one job.

One bidirectional gRPC stream per pair of parties (the lower rank dials the
higher), mutual TLS, messages split into chunks. A worker's job process listens on a
local socket behind its worker's port (`listen_local`, mpc/transport/router.py); a mesh
of its own (tests, `run_local_parties`) listens on a TCP port (`listen`). Each direction numbers its
messages; the receiver checks the numbers, so a lost or reordered message is a
clear error rather than silently wrong arithmetic. The mesh knows nothing about
CrypTen: the engine adapter builds its communicator on top of `send`/`recv`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import torch

from mpc.errors import (
    PeerAbort,
    PeerLost,
    PeerSilent,
    PeerUnreachable,
    ProtocolAbort,
    TransportError,
)
from mpc.proto import peer_pb2, peer_pb2_grpc
from mpc.transport import codec
from mpc.transport.router import MAX_SOCKET_PATH, local_server_credentials, relayed_identity
from mpc.transport.tls import (
    SERVER_OPTIONS,
    TlsIdentity,
    bind_server,
    peer_identity,
    secure_channel,
)

log = logging.getLogger(__name__)
Frame = peer_pb2.PeerFrame


@dataclass(frozen=True)
class WireEvent:
    """What an observer (audit log, privacy tests) learns of each message: never used
    to alter traffic. `payload` is the message's bytes exactly as they crossed the wire."""

    direction: str  # "sent" or "received"
    peer: str
    tag: str
    seq: int
    nonce: bytes
    kind: str  # "tensor" or "object"
    dtype: str
    shape: tuple[int, ...]
    payload: bytes


Observer = Callable[[WireEvent], None]


@dataclass
class _Inbound:
    """A message being reassembled from its chunks."""

    seq: int
    kind: int
    chunks: int
    dtype: str
    shape: tuple[int, ...]
    nonce: bytes
    tag: str
    parts: list[bytes]


def _status(exc: grpc.RpcError) -> str:
    # Client-side errors carry a status; server-side request iterators raise a bare RpcError.
    code = getattr(exc, "code", None)
    return f" ({code().name}: {exc.details()})" if callable(code) else ""


class _Closed:
    pass


_CLOSE = _Closed()


class PeerMesh(peer_pb2_grpc.PeerExchangeServicer):
    def __init__(
        self,
        job_id: str,
        rank: int,
        parties: Sequence[str],
        identity: TlsIdentity,
        host: str = "127.0.0.1",
        *,
        advertise_host: str | None = None,
        recv_timeout_s: float = 300.0,
        max_message_bytes: int = 256 * 1024 * 1024,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.job_id = job_id
        self.rank = rank
        self.parties = list(parties)
        self.identity = identity
        self.host = host
        self.advertise_host = advertise_host or host
        self.recv_timeout_s = recv_timeout_s
        self.max_message_bytes = max_message_bytes
        self.observers = list(observers)
        self.peers = [r for r in range(len(parties)) if r != rank]
        self._outbox: dict[int, queue.SimpleQueue[Any]] = {r: queue.SimpleQueue()
                                                           for r in self.peers}
        self._inbox: dict[int, queue.SimpleQueue[Any]] = {r: queue.SimpleQueue()
                                                          for r in self.peers}
        self._send_seq = dict.fromkeys(self.peers, 0)
        self._recv_seq = dict.fromkeys(self.peers, 0)
        self._partial: dict[int, _Inbound | None] = dict.fromkeys(self.peers)
        # _linked[r] is set when the stream with r is up, or when trying failed;
        # _up[r] says which of the two.
        self._linked = {r: threading.Event() for r in self.peers}
        self._up = dict.fromkeys(self.peers, False)
        self._link_error: dict[int, str] = {}
        # Each peer's certificate fingerprint: from the TLS handshake for peers that dial
        # us, as announced in the acknowledgement (by a server the CA vouched for) otherwise.
        self.peer_fingerprints: dict[int, str] = {}
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None
        self._channels: list[grpc.Channel] = []
        self._calls: list[tuple[int, Any]] = []
        self._closing = False
        self._relayed = False  # listens on a local socket, behind its worker's router

    # ---- set-up -------------------------------------------------------------------------
    def _serve(self, bind: Callable[[grpc.Server], int]) -> int:
        """Start the mesh's server on what `bind` binds; return the bound port."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=len(self.parties) + 2,
                                       thread_name_prefix="peer"),
            options=SERVER_OPTIONS,
        )
        peer_pb2_grpc.add_PeerExchangeServicer_to_server(self, server)
        bound = bind(server)
        server.start()
        self._server = server
        return bound

    def listen(self, port: int = 0) -> str:
        """Start this party's end of the mesh; return the address peers dial."""
        bound = self._serve(lambda server: bind_server(server, self.identity,
                                                       f"{self.host}:{port}"))
        return f"{self.advertise_host}:{bound}"

    def listen_local(self, path: str) -> str:
        """Start this party's end of the mesh on a Unix socket its worker relays peers to
        (the worker checked their certificates); return the path."""
        if len(path.encode()) > MAX_SOCKET_PATH:
            raise TransportError(f"the job's socket path {path} is too long for a Unix "
                                 f"socket (at most {MAX_SOCKET_PATH} bytes; set a shorter "
                                 "TMPDIR for the worker)")

        def bind(server: grpc.Server) -> int:
            try:
                bound = server.add_secure_port(f"unix:{path}", local_server_credentials())
            except RuntimeError as exc:
                raise TransportError(f"cannot listen on {path}: {exc}") from None
            if bound == 0:
                raise TransportError(f"cannot listen on {path}")
            return bound

        self._relayed = True
        self._serve(bind)
        return path

    def connect(self, endpoints: Mapping[int, str], timeout_s: float = 60.0) -> None:
        """Dial every higher-ranked peer; wait until every lower-ranked peer dialled us."""
        for r in self.peers:
            if r > self.rank:
                if r not in endpoints:
                    raise TransportError(f"no address for party {self.parties[r]}")
                self._dial(r, endpoints[r])
        deadline = time.monotonic() + timeout_s
        for r in sorted(self.peers, reverse=True):  # the peers we dial first
            self._linked[r].wait(max(0.0, deadline - time.monotonic()))
            if not self._up[r]:
                if r > self.rank:
                    raise PeerUnreachable(self.parties[r], endpoints[r], self.parties[self.rank],
                                          self._link_error.get(r, ""))
                raise TransportError(
                    f"party {self.parties[r]} did not connect within {timeout_s:.0f} s"
                )

    def _dial(self, r: int, address: str) -> None:
        channel = secure_channel(self.identity, address, self.parties[r])
        self._channels.append(channel)
        stub = peer_pb2_grpc.PeerExchangeStub(channel)
        hello = Frame(kind=Frame.HELLO, job_id=self.job_id, sender=self.rank,
                      cert_sha256=self.identity.fingerprint)
        call = stub.Exchange(self._outgoing(r, first=hello), wait_for_ready=True)
        self._calls.append((r, call))
        threading.Thread(target=self._read, args=(r, call), daemon=True,
                         name=f"peer-read-{r}").start()

    def Exchange(self, request_iterator: Iterator[Frame], context: grpc.ServicerContext
                 ) -> Iterator[Frame]:  # noqa: N802 (gRPC method name)
        # Behind the router, the caller's certificate was checked on the worker's port; the
        # local socket takes the identity it passes (and nothing on TCP ever does).
        caller = relayed_identity(context) if self._relayed else peer_identity(context)
        try:
            hello = next(request_iterator)
        except StopIteration:
            return
        r = hello.sender
        problem = None
        if hello.kind != Frame.HELLO:
            problem = "the first frame must be HELLO"
        elif hello.job_id != self.job_id:
            problem = f"unknown job {hello.job_id!r}"
        elif not (0 <= r < self.rank):
            problem = f"rank {r} may not dial rank {self.rank}"
        elif caller.role != "party" or caller.name != self.parties[r]:
            problem = (f"certificate of {caller.name!r} ({caller.role}) does not belong to "
                       f"party {self.parties[r]!r} of this job")
        elif self._up[r]:
            problem = f"party {self.parties[r]} is already connected"
        elif hello.cert_sha256 != caller.fingerprint:
            problem = "the HELLO names another certificate than the one presented"
        if problem:
            log.warning("refused peer stream from %s: %s", caller.name, problem)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
        threading.Thread(target=self._read, args=(r, request_iterator), daemon=True,
                         name=f"peer-read-{r}").start()
        self.peer_fingerprints[r] = caller.fingerprint
        self._up[r] = True
        self._linked[r].set()
        # Acknowledge, so the dialling side knows the stream is up.
        ack = Frame(kind=Frame.HELLO, job_id=self.job_id, sender=self.rank,
                    cert_sha256=self.identity.fingerprint)
        yield from self._outgoing(r, first=ack)

    # ---- sending ------------------------------------------------------------------------
    def _outgoing(self, r: int, first: Frame | None = None) -> Iterator[Frame]:
        if first is not None:
            yield first
        box = self._outbox[r]
        while True:
            frame = box.get()
            if frame is _CLOSE:
                return
            yield frame
            if frame.kind in (Frame.ABORT, Frame.CLOSE):
                return

    def send_tensor(self, dst: int, tensor: torch.Tensor, tag: str) -> None:
        dtype, shape, data = codec.tensor_bytes(tensor)
        self._send(dst, Frame.TENSOR, dtype, shape, data, tag)

    def send_object(self, dst: int, obj: Any, tag: str) -> None:
        self._send(dst, Frame.OBJECT, "", (), codec.encode_object(obj), tag)

    def _send(self, dst: int, kind: peer_pb2.PeerFrame.Kind, dtype: str,
              shape: tuple[int, ...], data: bytes, tag: str) -> None:
        if dst not in self._outbox:
            raise ProtocolAbort(f"rank {self.rank} cannot send to rank {dst}")
        nonce = os.urandom(32)
        parts = codec.chunk(data)
        box = self._outbox[dst]
        with self._lock:  # a message's number and its chunks' order go together
            seq = self._send_seq[dst]
            self._send_seq[dst] = seq + 1
            for i, part in enumerate(parts):
                box.put(Frame(kind=kind, seq=seq, chunk=i, chunks=len(parts), data=bytes(part),
                              dtype=dtype if i == 0 else "", shape=shape if i == 0 else (),
                              nonce=nonce if i == 0 else b"", tag=tag if i == 0 else ""))
        self._notify("sent", dst, tag, seq, nonce, kind, dtype, shape, data)

    def _notify(self, direction: str, peer: int, tag: str, seq: int, nonce: bytes, kind: int,
                dtype: str, shape: tuple[int, ...], data: bytes) -> None:
        if not self.observers:
            return
        event = WireEvent(direction, self.parties[peer], tag, seq, nonce,
                          "tensor" if kind == Frame.TENSOR else "object", dtype, tuple(shape),
                          bytes(data))
        for observe in self.observers:
            observe(event)

    # ---- receiving ----------------------------------------------------------------------
    def _read(self, r: int, frames: Iterator[Frame]) -> None:
        inbox = self._inbox[r]
        name = self.parties[r]
        try:
            for frame in frames:
                if frame.kind == Frame.HELLO:
                    # One HELLO per stream, and only as the answer to our dial: on a stream
                    # we accepted, the fingerprint comes from the TLS handshake, and a later
                    # HELLO must not overwrite what the audit log records of the peer.
                    if r < self.rank or self._up[r]:
                        raise ProtocolAbort(f"party {name} sent a second HELLO")
                    if frame.job_id != self.job_id or frame.sender != r:
                        raise ProtocolAbort(f"party {name} answered for another job or rank")
                    self.peer_fingerprints[r] = frame.cert_sha256
                    self._up[r] = True
                    self._linked[r].set()
                    continue
                if frame.kind == Frame.ABORT:
                    inbox.put(PeerAbort(name, frame.reason or "no reason given"))
                    return
                if frame.kind == Frame.CLOSE:
                    inbox.put(TransportError(f"party {name} closed the channel"))
                    return
                message = self._assemble(r, frame)
                if message is not None:
                    inbox.put(message)
            if not self._closing:
                inbox.put(PeerLost(name, self.parties[self.rank], " (channel ended)"))
        except grpc.RpcError as exc:
            self._link_error[r] = _status(exc)
            if not self._closing:
                inbox.put(PeerLost(name, self.parties[self.rank], _status(exc)))
        except ProtocolAbort as exc:
            inbox.put(exc)
        except Exception as exc:  # a reader thread must never die silently
            inbox.put(TransportError(f"channel to party {name} failed: {exc}"))
        finally:
            self._linked[r].set()  # wake connect(): if the stream never came up, it fails

    def _assemble(self, r: int, frame: Frame) -> tuple[int, Any, str, int] | None:
        name = self.parties[r]
        current = self._partial[r]
        if frame.kind not in (Frame.TENSOR, Frame.OBJECT):
            raise ProtocolAbort(f"party {name} sent an unexpected frame kind {frame.kind}")
        if len(frame.data) > codec.CHUNK_BYTES:
            raise ProtocolAbort(f"party {name} sent a chunk of {len(frame.data)} bytes")
        if current is None:
            if frame.seq != self._recv_seq[r] or frame.chunk != 0 or frame.chunks == 0:
                raise ProtocolAbort(
                    f"party {name} sent message {frame.seq} chunk {frame.chunk}; "
                    f"expected message {self._recv_seq[r]} chunk 0"
                )
            if frame.chunks * codec.CHUNK_BYTES > self.max_message_bytes + codec.CHUNK_BYTES:
                raise ProtocolAbort(f"party {name} announced a message of {frame.chunks} "
                                    f"chunks, over the limit of {self.max_message_bytes} bytes")
            if len(frame.nonce) != 32 or len(frame.tag) > 64 or len(frame.shape) > 8:
                raise ProtocolAbort(f"party {name} sent a malformed message header")
            current = _Inbound(frame.seq, frame.kind, frame.chunks, frame.dtype,
                               tuple(frame.shape), frame.nonce, frame.tag, [])
            self._partial[r] = current
        elif frame.seq != current.seq or frame.chunk != len(current.parts):
            raise ProtocolAbort(f"party {name} sent chunks out of order (message {frame.seq})")
        current.parts.append(frame.data)
        if len(current.parts) < current.chunks:
            return None
        self._partial[r] = None
        self._recv_seq[r] += 1
        data = b"".join(current.parts)
        self._notify("received", r, current.tag, current.seq, current.nonce, current.kind,
                     current.dtype, current.shape, data)
        if current.kind == Frame.TENSOR:
            value = codec.tensor_from_bytes(current.dtype, current.shape, data,
                                            origin=f"party {name}")
        else:
            value = codec.decode_object(data, origin=f"party {name}")
        return current.kind, value, current.tag, current.seq

    def _take(self, src: int, kind: int, tag: str) -> Any:
        if src not in self._inbox:
            raise ProtocolAbort(f"rank {self.rank} cannot receive from rank {src}")
        try:
            item = self._inbox[src].get(timeout=self.recv_timeout_s)
        except queue.Empty:
            raise PeerSilent(self.parties[src], self.parties[self.rank],
                             self.recv_timeout_s) from None
        if isinstance(item, Exception):
            self._inbox[src].put(item)  # every later receive fails the same way
            raise item
        got_kind, value, got_tag, seq = item
        if got_kind != kind or got_tag != tag:
            raise ProtocolAbort(
                f"out of step with party {self.parties[src]}: expected {tag}, "
                f"got {got_tag} (message {seq})"
            )
        return value

    def recv_tensor(self, src: int, tag: str) -> torch.Tensor:
        return self._take(src, Frame.TENSOR, tag)

    def recv_object(self, src: int, tag: str) -> Any:
        return self._take(src, Frame.OBJECT, tag)

    # ---- tear-down ----------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        """Tell every peer this party aborts (best effort), then close."""
        for r in self.peers:
            self._outbox[r].put(Frame(kind=Frame.ABORT, reason=reason[:500]))
        self.close(grace_s=1.0)

    def close(self, grace_s: float = 5.0) -> None:
        """Flush what is queued, then close streams, channels and the server."""
        if self._closing:
            return
        self._closing = True
        for r in self.peers:
            self._outbox[r].put(_CLOSE)
        deadline = time.monotonic() + grace_s
        for r, call in self._calls:
            # A dialled stream ends when our side's iterator returns and the peer
            # finishes; waiting lets the last frames drain. A stream that never came
            # up has nothing to drain.
            while self._up[r] and not call.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            call.cancel()
        for ch in self._channels:
            ch.close()
        if self._server is not None:
            self._server.stop(grace=max(0.0, deadline - time.monotonic())).wait()
