"""The dealer: correlated randomness for jobs, never any data or share of data.

The dealer learns, per job, the party names, the spec hash and the operation,
shape and count of each correlation, which the parties log as well.

A job id is served once: each rank joins once, and an id that was ever joined (its
`job_joined_first` entry is in the dealer's audit log, which is read back at start) gets
no fresh seeds after the job ended, expired or the dealer restarted. Fresh seeds under an
old id would hand out new correlated randomness against the same public values (Beaver
openings of two runs would differ by the difference of the inputs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from mpc.audit.events import AuditEvent
from mpc.audit.log import AuditLog, iter_entries
from mpc.config.party import raised_by
from mpc.config.scope import MAX_PAD
from mpc.engine.correlations import Request, correction, party_stream
from mpc.engine.dealer_client import request_from_proto
from mpc.engine.rng import KeyStream, new_seed
from mpc.kinds import DEALER_PARTS
from mpc.proto import common_pb2, dealer_pb2, dealer_pb2_grpc
from mpc.protocols.blind import POINT_BYTES
from mpc.transport.messages import tensor_chunks
from mpc.transport.tls import SERVER_OPTIONS, TlsIdentity, bind_server, require_peer
from mpc.transport.validate import job_id_problem, name_problem, sha256_problem

log = logging.getLogger(__name__)
MAX_PARTIES = 64
MAX_POINTS = MAX_PAD  # the largest list a party may hand over


@dataclass
class DealerJob:
    parties: tuple[str, ...]
    spec_sha256: str
    seeds: list[bytes]
    streams: list[KeyStream]
    served: list[Request] = field(default_factory=list)  # index = seq
    joined: set[int] = field(default_factory=set)
    left: set[int] = field(default_factory=set)
    created: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # kinds with a dealer part: the lists received, the public parameters, the outcome
    lists: dict[str, bytes] = field(default_factory=dict)
    link_params: tuple[tuple[int, ...], int] | None = None
    outcome: Any = None
    arrived: threading.Condition = field(default_factory=threading.Condition)


class DealerService(dealer_pb2_grpc.DealerServicer):
    def __init__(self, name: str, allowed_parties: tuple[str, ...] | None = None,
                 audit: AuditLog | None = None, job_ttl_s: float = 3600.0,
                 max_jobs: int = 256, link_timeout_s: float = 300.0) -> None:
        self.name = name
        self.allowed = allowed_parties
        self.audit = audit
        self.job_ttl_s = job_ttl_s
        self.max_jobs = max_jobs
        self.link_timeout_s = link_timeout_s
        self._jobs: dict[str, DealerJob] = {}
        # Every job id ever joined, from this dealer's own log: never served afresh.
        self._seen: set[str] = set() if audit is None else {
            e["job"] for e in iter_entries(audit.path)
            if e.get("event") == AuditEvent.JOB_JOINED_FIRST and isinstance(e.get("job"), str)}
        self._lock = threading.Lock()

    def _audit(self, event: AuditEvent, **fields: object) -> dict[str, Any] | None:
        if self.audit is None:
            return None
        return self.audit.append(event, **fields)

    def _expire(self) -> None:
        now = time.monotonic()
        for job_id in [j for j, job in self._jobs.items() if now - job.created > self.job_ttl_s]:
            del self._jobs[job_id]  # seeds erased with the job
            log.info("job %s expired; its seeds are erased", job_id)

    def Join(self, request: dealer_pb2.JoinRequest, context: grpc.ServicerContext
             ) -> dealer_pb2.JoinReply:  # noqa: N802
        peer = require_peer(context, ["party"], self.allowed)
        parties = tuple(request.parties)
        job_id = request.job_id
        problem = job_id_problem(job_id)
        if problem is None and not 2 <= len(parties) <= MAX_PARTIES:
            problem = f"a job needs 2 to {MAX_PARTIES} distinct parties"
        problem = problem or next(filter(None, map(name_problem, parties)), None)
        if problem is None and len(set(parties)) != len(parties):
            problem = f"a job needs 2 to {MAX_PARTIES} distinct parties"
        elif problem is None and (not request.rank < len(parties) or
                                  parties[request.rank] != peer.name):
            problem = f"{peer.name} is not rank {request.rank} of this job"
        problem = problem or sha256_problem(request.spec_sha256, "spec SHA-256")
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        with self._lock:
            self._expire()
            job = self._jobs.get(job_id)
            refusal = None
            if job is None and job_id in self._seen:
                refusal = (f"job {job_id} was served before: a job id is used once, so its "
                           "seeds and correlations are never handed out again")
            elif job is not None and request.rank in job.joined:
                refusal = (f"{peer.name} (rank {request.rank}) joined job {job_id} already: "
                           "each party joins a job once")
            if refusal:
                log.warning("refused a join of %s: %s", peer.name, refusal)
                self._audit(AuditEvent.JOIN_REFUSED, job=job_id, party=peer.name, rank=request.rank,
                            reason=refusal)
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, refusal)
            if job is None and len(self._jobs) >= self.max_jobs:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"the dealer holds {len(self._jobs)} jobs, its limit "
                              f"{raised_by('max_jobs')}")
            if job is None:
                seeds = [new_seed() for _ in parties]
                job = DealerJob(parties, request.spec_sha256, seeds,
                                [party_stream(s, job_id, r) for r, s in enumerate(seeds)])
                # Logged before any seed leaves: after a crash the id still counts as used.
                self._audit(AuditEvent.JOB_JOINED_FIRST, job=job_id, parties=list(parties),
                            spec_sha256=request.spec_sha256)
                self._seen.add(job_id)
                self._jobs[job_id] = job
            if job.parties != parties or job.spec_sha256 != request.spec_sha256:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"{peer.name} joined job {job_id} with a different party "
                              "list or spec than the other parties")
            job.joined.add(request.rank)
            self._audit(AuditEvent.PARTY_JOINED, job=job_id, party=peer.name, rank=request.rank)
        return dealer_pb2.JoinReply(seed=job.seeds[request.rank])

    def Correlation(self, request: dealer_pb2.CorrelationRequest,
                    context: grpc.ServicerContext) -> Iterator[common_pb2.Tensor]:  # noqa: N802
        peer = require_peer(context, ["party"], self.allowed)
        job = self._jobs.get(request.job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown job {request.job_id!r}")
        if peer.name != job.parties[0]:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          "only the job's first party receives corrections")
        try:
            req = request_from_proto(request)
            req.validate()
        except ValueError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        with job.lock:
            served = len(job.served)
            if req.seq < served:
                if job.served[req.seq] != req:  # a retry must ask for exactly the same
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                  f"request {req.seq} differs from the one already served")
            elif req.seq == served:
                job.served.append(req)
                self._audit(AuditEvent.CORRELATION, job=request.job_id, request=req.seq, op=req.op,
                            shape=list(req.output_size()))
            else:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"request {req.seq} skips ahead of {served}")
        # Deterministic in (seeds, request): a retry gets identical bytes.
        yield from tensor_chunks(correction(req, job.streams))

    def Leave(self, request: dealer_pb2.LeaveRequest, context: grpc.ServicerContext
              ) -> dealer_pb2.LeaveReply:  # noqa: N802
        peer = require_peer(context, ["party"], self.allowed)
        with self._lock:
            job = self._jobs.get(request.job_id)
            if job is None:
                return dealer_pb2.LeaveReply()
            if request.rank >= len(job.parties) or job.parties[request.rank] != peer.name:
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              f"{peer.name} is not rank {request.rank} of this job")
            job.left.add(request.rank)
            entry = self._audit(AuditEvent.PARTY_LEFT, job=request.job_id, party=peer.name,
                                requests=request.requests, served=len(job.served))
            if len(job.left) == len(job.parties):
                del self._jobs[request.job_id]  # erase the job's seeds
        if entry is None:
            return dealer_pb2.LeaveReply()
        # The head of the dealer's log with this leave in it: the party pins it, so the
        # dealer cannot later drop or rewrite what it logged of the job.
        return dealer_pb2.LeaveReply(head=common_pb2.AuditHead(
            member=entry["member"], seq=entry["seq"], hash=entry["hash"], sig=entry["sig"]))

    # ---- linkage and overlap ---------------------------------------------------------------
    def _party_job(self, context: grpc.ServicerContext, job_id: str, rank: int) -> DealerJob:
        peer = require_peer(context, ["party"], self.allowed)
        job = self._jobs.get(job_id)
        if job is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown job {job_id[:64]!r}")
        if rank >= len(job.parties) or job.parties[rank] != peer.name:
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"{peer.name} is not rank {rank} of this job")
        return job

    @staticmethod
    def expected_list(job: DealerJob, rank: int, name: str) -> bool:
        """Which party hands over which list: the one that applied the last key (each
        kind's dealer part says which)."""
        n = len(job.parties)
        return any(part.hands_over(n, rank, name) for part, _ in DEALER_PARTS.values())

    def SubmitPoints(self, request_iterator: Iterator[dealer_pb2.PointsChunk],
                     context: grpc.ServicerContext) -> dealer_pb2.SubmitReply:  # noqa: N802
        first = next(request_iterator, None)
        if first is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no points")
        job = self._party_job(context, first.job_id, first.rank)
        if not self.expected_list(job, first.rank, first.list):
            context.abort(grpc.StatusCode.PERMISSION_DENIED,
                          f"rank {first.rank} does not hand over list {first.list[:40]!r}")
        if first.count > MAX_POINTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"more than {MAX_POINTS} points")
        size = first.count * POINT_BYTES
        parts, received = [first.points], len(first.points)
        for chunk in request_iterator:
            received += len(chunk.points)
            if received > size:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "more points than announced")
            parts.append(chunk.points)
        if received != size:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"{received} bytes for {first.count} points")
        with job.arrived:
            if first.list in job.lists:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"list {first.list} is in")
            job.lists[first.list] = b"".join(parts)
            job.arrived.notify_all()
        self._audit(AuditEvent.POINTS_RECEIVED, job=first.job_id, list=first.list,
                    count=first.count)
        return dealer_pb2.SubmitReply()

    def FetchOutcome(self, request: dealer_pb2.FetchRequest, context: grpc.ServicerContext
                     ) -> Iterator[common_pb2.Tensor]:  # noqa: N802
        job = self._party_job(context, request.job_id, request.rank)
        n = len(job.parties)
        if request.part not in DEALER_PARTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown part {request.part[:40]!r}")
        dealer_part, index = DEALER_PARTS[request.part]
        params = (tuple(request.widths), request.pad_to)
        problem = dealer_part.params_problem(n, *params)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        wanted = dealer_part.wanted(n)
        with job.arrived:
            if job.link_params is None:
                job.link_params = params
            elif job.link_params != params:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              "the parties disagree on the list parameters")
            # (once the outcome is computed the lists are dropped)
            if not job.arrived.wait_for(
                    lambda: job.outcome is not None or wanted <= job.lists.keys(),
                    timeout=self.link_timeout_s):
                missing = sorted(wanted - job.lists.keys())
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"lists {', '.join(missing)} never arrived")
            if job.outcome is None:
                try:
                    job.outcome = dealer_part.outcome(request.job_id, job.seeds, job.lists,
                                                      *params)
                except ValueError as exc:
                    context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
                self._audit(AuditEvent.LINK_OUTCOME, job=request.job_id, lists=sorted(job.lists))
                job.lists.clear()  # the points are not needed any more
        yield from tensor_chunks(job.outcome[request.rank][index])

    def active_jobs(self) -> int:
        return len(self._jobs)


def start_dealer(identity: TlsIdentity, address: str, service: DealerService,
                 max_workers: int = 32) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="dealer"),
                         options=SERVER_OPTIONS)
    dealer_pb2_grpc.add_DealerServicer_to_server(service, server)
    port = bind_server(server, identity, address)
    server.start()
    return server, port
