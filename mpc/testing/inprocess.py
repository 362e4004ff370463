"""N parties as threads of one process: the real engine over queues, for fast tests.

    from mpc.testing.inprocess import run_in_threads

    def program(ctx):                        # runs on each party's own thread
        parts = ctx.share_from_each(torch.tensor([ctx.rank + 1]))
        return ctx.open_to(parts[0] + parts[1] + parts[2], 0)

    results = run_in_threads(program, world_size=3)   # one result per rank, in milliseconds

What is real: MpcContext/Secret, CrypTen, the engine's communicator, PRNG set-up and dealer
provider (engine/session.py, the very code a job process runs), the correlations
(engine/correlations.py, as the dealer computes them), the linkage and overlap outcome (the
dealer parts of mpc/kinds, as the dealer service uses them), the PeerChannel tagging and
transport.codec's encoding of every message. What is not: TLS, gRPC, processes, the
dealer's gRPC service and its audit log, and blinding pools (lists are blinded inline).
`run_local_parties` (local_parties.py) runs the same programs as real processes over mutual
TLS and a gRPC dealer.

CrypTen's process-global state (communicator, generators, provider) is per thread inside
the engine adapter (engine/crypten_compat.py, 5. and 6.). Programs may use MpcContext and
Secret, and plain CrypTen arithmetic, comparisons and openings; CrypTen functions that
change `crypten.cfg` temporarily (max, exp, log, reciprocal, sqrt) and autograd are not
safe with parties as threads. Test use only.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from mpc.engine.channels import MeshChannel, OutcomePart
from mpc.engine.correlations import Request, correction, party_stream
from mpc.engine.rng import KeyStream, new_seed
from mpc.errors import DealerError, PeerAbort, PeerSilent, ProtocolAbort, TransportError
from mpc.transport import codec
from mpc.transport.peer_mesh import Observer, WireEvent

MAX_TAG = 64  # as transport.PeerMesh: a longer tag is a malformed header
_TENSOR, _OBJECT = "tensor", "object"


@dataclass(frozen=True)
class _Message:
    kind: str
    data: bytes
    dtype: str
    shape: tuple[int, ...]
    tag: str
    seq: int


class InProcessNetwork:
    """The queues between the parties of one job: one per ordered pair of ranks."""

    def __init__(self, job_id: str, parties: Sequence[str], *, recv_timeout_s: float = 30.0,
                 observers: Sequence[Observer] = ()) -> None:
        if len(parties) < 2 or len(set(parties)) != len(parties):
            raise ValueError("a job has at least two distinct parties")
        self.job_id = job_id
        self.parties = list(parties)
        self.recv_timeout_s = recv_timeout_s
        self.observers = list(observers)
        n = len(self.parties)
        self._queues: dict[tuple[int, int], queue.SimpleQueue[Any]] = {
            (src, dst): queue.SimpleQueue() for src in range(n) for dst in range(n)
            if src != dst}

    def mesh(self, rank: int) -> InProcessMesh:
        return InProcessMesh(self, rank)

    def queue(self, src: int, dst: int) -> queue.SimpleQueue[Any]:
        return self._queues[(src, dst)]


class InProcessMesh:
    """One party's end of an InProcessNetwork, with PeerMesh's interface and checks: per
    direction sequence numbers, the tag and kind of each message checked on receipt (a
    mismatch is a ProtocolAbort naming the peer), PeerSilent after the receive timeout,
    PeerAbort once a peer aborted. Messages cross as transport.codec bytes, as on the wire."""

    def __init__(self, network: InProcessNetwork, rank: int) -> None:
        self.network = network
        self.job_id = network.job_id
        self.rank = rank
        self.parties = list(network.parties)
        self.peers = [r for r in range(len(self.parties)) if r != rank]
        self.recv_timeout_s = network.recv_timeout_s
        self._send_seq = dict.fromkeys(self.peers, 0)
        self._recv_seq = dict.fromkeys(self.peers, 0)
        self._lock = threading.Lock()
        self._closed = False

    def _check_peer(self, peer: int, what: str) -> None:
        if peer not in self._send_seq:
            raise ProtocolAbort(f"rank {self.rank} cannot {what} rank {peer}")

    # ---- sending ------------------------------------------------------------------------
    def send_tensor(self, dst: int, tensor: torch.Tensor, tag: str) -> None:
        dtype, shape, data = codec.tensor_bytes(tensor)
        self._send(dst, _TENSOR, dtype, shape, data, tag)

    def send_object(self, dst: int, obj: Any, tag: str) -> None:
        self._send(dst, _OBJECT, "", (), codec.encode_object(obj), tag)

    def _send(self, dst: int, kind: str, dtype: str, shape: tuple[int, ...], data: bytes,
              tag: str) -> None:
        self._check_peer(dst, "send to")
        if self._closed:
            raise TransportError(f"the channels of party {self.parties[self.rank]} are closed")
        if len(tag) > MAX_TAG:
            raise ProtocolAbort(f"tag {tag[:80]!r} is longer than {MAX_TAG} characters")
        with self._lock:
            seq = self._send_seq[dst]
            self._send_seq[dst] = seq + 1
            self.network.queue(self.rank, dst).put(_Message(kind, data, dtype, shape, tag, seq))
        self._notify("sent", dst, tag, seq, kind, dtype, shape, data)

    def _notify(self, direction: str, peer: int, tag: str, seq: int, kind: str, dtype: str,
                shape: tuple[int, ...], data: bytes) -> None:
        for observe in self.network.observers:
            observe(WireEvent(direction, self.parties[peer], tag, seq, os.urandom(32), kind,
                              dtype, tuple(shape), bytes(data)))

    # ---- receiving ----------------------------------------------------------------------
    def _take(self, src: int, kind: str, tag: str) -> Any:
        self._check_peer(src, "receive from")
        inbox = self.network.queue(src, self.rank)
        name = self.parties[src]
        try:
            item = inbox.get(timeout=self.recv_timeout_s)
        except queue.Empty:
            raise PeerSilent(name, self.parties[self.rank], self.recv_timeout_s) from None
        if isinstance(item, Exception):
            inbox.put(item)  # every later receive fails the same way
            raise item
        if item.seq != self._recv_seq[src]:
            raise ProtocolAbort(f"party {name} sent message {item.seq}; expected message "
                                f"{self._recv_seq[src]}")
        self._recv_seq[src] += 1
        self._notify("received", src, item.tag, item.seq, item.kind, item.dtype, item.shape,
                     item.data)
        if item.kind != kind or item.tag != tag:
            raise ProtocolAbort(f"out of step with party {name}: expected {tag}, "
                                f"got {item.tag} (message {item.seq})")
        if kind == _TENSOR:
            return codec.tensor_from_bytes(item.dtype, item.shape, item.data,
                                           origin=f"party {name}")
        return codec.decode_object(item.data, origin=f"party {name}")

    def recv_tensor(self, src: int, tag: str) -> torch.Tensor:
        tensor: torch.Tensor = self._take(src, _TENSOR, tag)
        return tensor

    def recv_object(self, src: int, tag: str) -> Any:
        return self._take(src, _OBJECT, tag)

    # ---- tear-down ----------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        """Every peer's next receive from this party raises PeerAbort, as over the wire."""
        if self._closed:
            return
        for r in self.peers:
            self.network.queue(self.rank, r).put(
                PeerAbort(self.parties[self.rank], reason[:500] or "no reason given"))
        self.close()

    def close(self) -> None:
        self._closed = True


@dataclass
class LocalDealer:
    """The dealer of one job, in process: the seeds it shares with each party, party 0's
    corrections (engine/correlations.py, with the dealer service's ordering checks) and the
    outcome of linkage and overlap (each kind's DealerPart, as the dealer service uses it)."""

    job_id: str
    parties: list[str]
    wait_s: float = 30.0
    seeds: list[bytes] = field(init=False)
    served: list[Request] = field(default_factory=list, init=False)  # index = seq
    lists: dict[str, bytes] = field(default_factory=dict, init=False)
    params: tuple[tuple[int, ...], int] | None = field(default=None, init=False)
    outcome: list[list[torch.Tensor]] | None = field(default=None, init=False)
    aborted: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.seeds = [new_seed() for _ in self.parties]
        self._streams: list[KeyStream] = [party_stream(s, self.job_id, r)
                                          for r, s in enumerate(self.seeds)]
        self._lock = threading.Lock()
        self._arrived = threading.Condition()

    def link(self, rank: int) -> LocalDealerLink:
        """Party `rank`'s DealerChannel."""
        return LocalDealerLink(self, rank)

    def correlation(self, req: Request) -> torch.Tensor:
        """Party 0's last component of request `req` (its Fetch)."""
        try:
            req.validate()
        except ValueError as exc:
            raise DealerError(f"local dealer: {exc}") from None
        with self._lock:
            if req.seq < len(self.served):
                if self.served[req.seq] != req:
                    raise DealerError(f"request {req.seq} differs from the one already served")
            elif req.seq == len(self.served):
                self.served.append(req)
            else:
                raise DealerError(f"request {req.seq} skips ahead of {len(self.served)}")
        return correction(req, self._streams)

    def submit_points(self, rank: int, list_name: str, points: bytes) -> None:
        from mpc.kinds import DEALER_PARTS

        n = len(self.parties)
        if not any(part.hands_over(n, rank, list_name) for part, _ in DEALER_PARTS.values()):
            raise DealerError(f"rank {rank} does not hand over list {list_name[:40]!r}")
        with self._arrived:
            if list_name in self.lists:
                raise DealerError(f"list {list_name} is in")
            self.lists[list_name] = bytes(points)
            self._arrived.notify_all()

    def fetch_outcome(self, rank: int, part: str, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor:
        from mpc.kinds import DEALER_PARTS

        if part not in DEALER_PARTS:
            raise DealerError(f"unknown part {part[:40]!r}")
        dealer_part, index = DEALER_PARTS[part]
        n = len(self.parties)
        params = (tuple(widths), pad_to)
        problem = dealer_part.params_problem(n, *params)
        if problem:
            raise DealerError(problem)
        wanted = dealer_part.wanted(n)
        with self._arrived:
            if self.params is None:
                self.params = params
            elif self.params != params:
                raise DealerError("the parties disagree on the list parameters")
            if not self._arrived.wait_for(
                    lambda: self.aborted is not None or self.outcome is not None
                    or wanted <= self.lists.keys(), timeout=self.wait_s):
                missing = sorted(wanted - self.lists.keys())
                raise DealerError(f"lists {', '.join(missing)} never arrived")
            if self.aborted is not None:
                raise DealerError(f"the job was aborted: {self.aborted}")
            if self.outcome is None:
                try:
                    self.outcome = dealer_part.outcome(self.job_id, self.seeds, self.lists,
                                                       *params)
                except ValueError as exc:
                    raise DealerError(str(exc)) from None
                self.lists.clear()
            return self.outcome[rank][index]

    def abort(self, reason: str) -> None:
        """Wake every party waiting for the outcome (it raises DealerError)."""
        with self._arrived:
            self.aborted = self.aborted or reason
            self._arrived.notify_all()


class LocalDealerLink:
    """DealerChannel of one party to a LocalDealer."""

    def __init__(self, dealer: LocalDealer, rank: int) -> None:
        self._dealer = dealer
        self._rank = rank

    @property
    def seed(self) -> bytes:
        return self._dealer.seeds[self._rank]

    def submit_points(self, list_name: str, points: bytes) -> None:
        self._dealer.submit_points(self._rank, list_name, points)

    def fetch_outcome(self, part: OutcomePart, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor:
        return self._dealer.fetch_outcome(self._rank, part, widths, pad_to)


@dataclass
class ThreadRun:
    """What one in-process run leaves behind, for tests that look beyond the results."""

    job_id: str
    parties: list[str]
    dealer: LocalDealer
    results: list[Any] = field(default_factory=list)
    ledgers: list[list[Any]] = field(default_factory=list)  # each party's consumed correlations
    seconds: float = 0.0


def run_in_threads(program: Callable[..., Any], world_size: int = 3, *,
                   args: tuple[Any, ...] = (), with_io: bool = False,
                   timeout_s: float = 60.0) -> list[Any]:
    """Run `program(ctx, *args)` (with `with_io`: `program(ctx, io, *args)`, io the party's
    LinkIO) for every rank on its own thread; return the results by rank, or raise the first
    failure (the root cause, not a peer's echo of it) as it was raised, with a note naming
    the party."""
    return run_threads(program, world_size, args=args, with_io=with_io,
                       timeout_s=timeout_s).results


def run_threads(program: Callable[..., Any], world_size: int = 3, *,
                args: tuple[Any, ...] = (), with_io: bool = False, timeout_s: float = 60.0,
                observers: Sequence[Observer] = ()) -> ThreadRun:
    """run_in_threads, returning the whole ThreadRun (results, dealer, ledgers, time);
    `observers` see every message as transport.PeerMesh's observers do."""
    from mpc.engine import crypten_compat
    from mpc.engine.session import EngineSession
    from mpc.protocols.linkage import LinkIO

    parties = [f"party{r}" for r in range(world_size)]
    job_id = uuid.uuid4().hex
    network = InProcessNetwork(job_id, parties, recv_timeout_s=timeout_s, observers=observers)
    dealer = LocalDealer(job_id, parties, wait_s=timeout_s)
    results: dict[int, Any] = {}
    ledgers: dict[int, list[Any]] = {}
    failures: list[tuple[int, BaseException]] = []
    lock = threading.Lock()

    def party(rank: int) -> None:
        mesh = network.mesh(rank)
        try:
            session = EngineSession(mesh, party_stream(dealer.seeds[rank], job_id, rank),
                                    dealer.correlation if rank == 0 else None)
            with session as ctx:
                if with_io:
                    io = LinkIO(MeshChannel(mesh), dealer.link(rank))
                    results[rank] = program(ctx, io, *args)
                else:
                    results[rank] = program(ctx, *args)
            ledgers[rank] = list(session.provider.ledger)
        except BaseException as exc:  # recorded, raised on the caller's thread
            with lock:
                failures.append((rank, exc))
            reason = f"{type(exc).__name__}: {exc}"
            mesh.abort(reason)
            dealer.abort(f"{parties[rank]}: {reason}")
        finally:
            mesh.close()

    started = time.perf_counter()
    with crypten_compat.parties_as_threads():
        threads = [threading.Thread(target=party, args=(r,), name=f"party{r}", daemon=True)
                   for r in range(world_size)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + timeout_s + 5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
    seconds = time.perf_counter() - started
    if failures:
        echoes = (PeerAbort, PeerSilent)
        rank, exc = next(((r, e) for r, e in failures if not isinstance(e, echoes)),
                         failures[0])
        exc.add_note(f"raised by {parties[rank]} (parties as threads, job {job_id[:8]})")
        raise exc
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        raise TimeoutError(f"{', '.join(stuck)} did not finish within {timeout_s:.0f} s")
    return ThreadRun(job_id, parties, dealer, [results[r] for r in range(world_size)],
                     [ledgers[r] for r in range(world_size)], seconds)
