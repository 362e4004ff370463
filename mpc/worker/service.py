"""The worker service: a data party's long-running gRPC endpoint for coordinators.

Thin servicer, as the project's transport rule says: it checks who calls, checks
the local policy, and runs each job in a child process of its own (isolation,
time limit, CrypTen's global state), relaying the job's events to the
coordinator. A job that fails, times out or loses its coordinator is killed;
the worker keeps serving. Its one port also carries the peer links of its jobs: the
router (mpc/transport/router.py) checks each peer and relays it to the job process's
local socket, so no job opens a port of its own.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mpc.audit.events import COORDINATOR_ROLE, AuditEvent
from mpc.audit.log import AuditLog, Head, iter_entries
from mpc.config.party import PartyConfig, raised_by
from mpc.config.rules import applied_rules
from mpc.config.spec import COORDINATOR, UseCaseSpec
from mpc.errors import Code, PolicyRefused
from mpc.phases import Phase
from mpc.proto import common_pb2, worker_pb2, worker_pb2_grpc
from mpc.transport.messages import (
    failure_to_proto,
    rules_from_proto,
    rules_to_proto,
    tensor_to_proto,
)
from mpc.transport.router import PeerRouter, Route
from mpc.transport.tls import SERVER_OPTIONS, TlsIdentity, bind_server, require_peer
from mpc.transport.validate import (
    MAX_REASON,
    address_problem,
    head_problem,
    job_id_problem,
    name_problem,
)
from mpc.worker.job_events import (
    AbortOrder,
    Done,
    Exited,
    Failed,
    JobEvent,
    Order,
    Progress,
    Ready,
    ReleaseShares,
    StartOrder,
    phase_of,
)
from mpc.worker.job_process import run_job
from mpc.worker.ledger import Ledger
from mpc.worker.policy import approve, floors
from mpc.worker.warm import job_context, warm_up
from mpc.worker.warm import stop as stop_forkserver

log = logging.getLogger(__name__)
Event = worker_pb2.JobEvent
MAX_SEALABLE = 1024  # finished jobs a coordinator may still seal
JOB_END_GRACE_S = 2.0  # a job told to abort is killed if it has not ended by then
# The detail of ACCEPTED: the job process it starts takes seconds (a fresh interpreter that
# imports its engine) before it reports anything itself.
STARTING_JOB_PROCESS = "starting job process"


@dataclass
class JobHandle:
    job_id: str
    coordinator: str
    parties: int
    process: Any
    conn: Any
    events: queue.Queue[JobEvent] = field(default_factory=queue.Queue)
    names: tuple[str, ...] = ()  # the job's parties, by rank
    rank: int = -1  # this worker's party's rank in the job
    socket: str | None = None  # where the job process takes its peers, once it is ready
    started: float = field(default_factory=time.monotonic)
    abort_reason: str | None = None  # set when the job must end before it finished
    worker_stops: bool = False  # aborted because the worker stops: the coordinator is told
    audited: bool = False  # its end (done, failed or aborted) is in the audit log
    finished: bool = False  # its process is ended and it is off the books
    lock: threading.Lock = field(default_factory=threading.Lock)
    # One ender at a time: the stream's end and a stopping worker may both end the job.
    end_lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, order: Order) -> bool:
        with self.lock:
            try:
                self.conn.send(order)
                return True
            except (OSError, BrokenPipeError):
                return False

    def pump(self) -> None:
        """Move the job's events from its pipe to the queue (on a thread)."""
        try:
            while True:
                self.events.put(self.conn.recv())
        except (EOFError, OSError):
            self.events.put(Exited())

    def kill(self, grace_s: float = JOB_END_GRACE_S) -> None:
        with self.end_lock:
            self.process.join(timeout=grace_s)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)


# Starts a job's process: (config, approved spec, job id, coordinator) -> (the process, the
# worker's end of its control pipe). The default spawns run_job; tests pass a fake.
# (Called under the service's lock.)
StartJob = Callable[[PartyConfig, UseCaseSpec, str, str], tuple[Any, Any]]


class WorkerService(worker_pb2_grpc.WorkerServicer):
    def __init__(self, config: PartyConfig, audit: AuditLog,
                 start_job: StartJob | None = None) -> None:
        self.config = config
        self.audit = audit
        self.jobs: dict[str, JobHandle] = {}
        self.ledger = Ledger.from_log(config.audit_log)
        self._aborted: collections.deque[str] = collections.deque(maxlen=1024)
        # Every job id this worker ever received, from its own log: a job id is used once.
        self._seen: set[str] = {e["job"] for e in iter_entries(config.audit_log)
                                if e.get("event") == AuditEvent.JOB_RECEIVED
                                and isinstance(e.get("job"), str)}
        # Jobs that finished here, with their coordinator, until it seals them (bounded).
        self._sealable: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._stopping: str | None = None  # why the worker stops, once it does
        self._mp = job_context()  # forked from a warm forkserver, never from this process
        self._start_job = start_job or self._spawn_job
        # Where peers dial this worker's jobs: its own port (start_worker sets the bound one).
        self.peer_address = f"{config.peer_advertise}:{config.listen.rpartition(':')[2]}"
        self.router = PeerRouter(config.name, self._route)
        self._peer_dir: Path | None = None  # the jobs' sockets; made at the first job

    def _peer_socket(self, job_id: str) -> str:
        """The local socket of a job's peer links, in a directory only this worker's user
        may enter (mkdtemp makes it mode 700): nobody else can reach a job behind the
        router. (Called under self._lock.)"""
        if self._peer_dir is None:
            self._peer_dir = Path(tempfile.mkdtemp(prefix="mpc-peers-"))
        # A digest, not the id itself: a Unix socket's path is short.
        return str(self._peer_dir / f"job-{hashlib.sha256(job_id.encode()).hexdigest()[:16]}"
                                    ".sock")

    def _route(self, job_id: str) -> Route | None:
        """The router's view of a running job; None once it ends."""
        handle = self.jobs.get(job_id)
        if handle is None or handle.finished or handle.abort_reason is not None:
            return None
        return Route(handle.names, handle.rank, handle.socket)

    def _spawn_job(self, config: PartyConfig, spec: UseCaseSpec, job_id: str,
                   coordinator: str) -> tuple[Any, Any]:
        """The job's own process, running run_job, and the worker's end of its pipe."""
        parent, child = self._mp.Pipe()
        # Not a daemon: a job blinds with a process pool of its own. It still ends
        # with its worker: its control pipe closes and it exits at once.
        process = self._mp.Process(target=run_job, name=f"job-{job_id[:8]}",
                                   args=(child, config, spec, job_id, coordinator,
                                         self._peer_socket(job_id)))
        process.start()
        child.close()
        return process, parent

    def _failure(self, job_id: str, code: Code, message: str, party: str | None = None
                 ) -> Event:
        return Event(job_id=job_id, party=self.config.name, phase=Phase.FAILED.to_proto(),
                     failure=failure_to_proto(party or self.config.name, code, message))

    def Submit(self, request: worker_pb2.SubmitRequest, context: grpc.ServicerContext
               ) -> Iterator[Event]:  # noqa: N802
        coordinator = require_peer(context, ["coordinator"]).name
        job_id = request.job_id
        limits = self.config.limits
        problem = job_id_problem(job_id)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        if len(request.spec_toml) > limits.max_spec_bytes:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the spec has {len(request.spec_toml)} bytes; {self.config.name} "
                          f"takes at most {limits.max_spec_bytes} "
                          f"{raised_by('max_spec_bytes')}")
        if len(self.jobs) >= limits.max_concurrent_jobs:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.config.name} runs {len(self.jobs)} jobs already, its limit "
                          f"{raised_by('max_concurrent_jobs')}")
        if self._stopping is not None:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.config.name}: {self._stopping}")
        spec_sha256 = hashlib.sha256(request.spec_toml).hexdigest()
        with self._lock:  # one look and one mark: two submissions of one id cannot both pass
            replay = job_id in self._seen
            self._seen.add(job_id)
        if replay:
            # A job id is used once, whatever became of the job: a second run under the
            # same id would reuse its per-job randomness (masks, blinding, dealer seeds).
            refusal = PolicyRefused(self.config.name, f"job id {job_id} was used before; a "
                                                      "job id is used once")
            self.audit.append(AuditEvent.JOB_REPLAY_REFUSED, job=job_id, coordinator=coordinator,
                              code=Code.POLICY, reason=refusal.reason, spec_sha256=spec_sha256)
            log.warning("job %s refused: %s", job_id, refusal.reason)
            yield self._failure(job_id, Code.POLICY, str(refusal))
            return
        self.audit.append(AuditEvent.JOB_RECEIVED, job=job_id, coordinator=coordinator,
                          spec_sha256=spec_sha256)
        try:
            spec = approve(self.config, request.spec_toml, coordinator)
            problem = _names_problem(spec)
            if problem:
                raise PolicyRefused(self.config.name, problem)
            dataset = spec.dataset_of(self.config.name)
            self.ledger.reserve(self.config.name, job_id, spec,
                                self.config.datasets[dataset].bounds,
                                self.config.datasets[dataset].definition())
        except PolicyRefused as exc:
            self.audit.append(AuditEvent.POLICY_DECISION, job=job_id, approved=False,
                              reason=exc.reason,
                              spec_sha256=hashlib.sha256(request.spec_toml).hexdigest())
            log.warning("job %s refused: %s", job_id, exc.reason)
            yield self._failure(job_id, Code.POLICY, str(exc))
            return
        self.audit.append(AuditEvent.POLICY_DECISION, job=job_id, approved=True,
                          usecase=spec.name,
                          spec_sha256=spec.sha256, parties=list(spec.parties),
                          recipients=list(spec.recipients),
                          rules=asdict(applied_rules(spec.disclosure,
                                                     [floors(self.config, spec)])))
        with self._lock:
            # The abort overtook the submission, or the worker began to stop meanwhile
            # (it ends only the jobs it knows of).
            aborted = job_id in self._aborted
            reason = "the job was already aborted" if aborted else self._stopping
            if reason is None:
                process, parent = self._start_job(self.config, spec, job_id, coordinator)
                handle = JobHandle(job_id, coordinator, len(spec.parties), process, parent,
                                   names=tuple(spec.parties),
                                   rank=spec.rank_of(self.config.name))
                self.jobs[job_id] = handle
        if reason is not None:
            self.audit.append(AuditEvent.JOB_ABORTED, job=job_id, code=Code.ABORTED,
                              reason=reason)
            self.ledger.cancel(job_id)
            yield self._failure(job_id, Code.ABORTED if aborted else Code.WORKER, reason)
            return
        threading.Thread(target=handle.pump, daemon=True, name=f"pump-{job_id[:8]}").start()
        context.add_callback(lambda: self._on_stream_end(handle))
        log.info("job %s (%s) accepted from %s", job_id, spec.name, coordinator)
        # Whatever ends this stream (job end, abort, a coordinator that hangs up while
        # we yield), the finally clause ends the job process and audits how it ended.
        unfinished: str | None = "the coordinator went away"
        try:
            yield Event(job_id=job_id, party=self.config.name, phase=Phase.ACCEPTED.to_proto(),
                        detail=STARTING_JOB_PROCESS)
            unfinished = None
            yield from self._relay(handle, context)
        finally:
            self._finish(handle, unfinished or handle.abort_reason)

    def _relay(self, handle: JobHandle, context: grpc.ServicerContext) -> Iterator[Event]:
        """The job's events until it ends; sets handle.abort_reason if it did not end itself."""
        deadline = handle.started + self.config.job_timeout_s
        while True:
            if handle.abort_reason is not None:
                if handle.worker_stops:
                    yield self._failure(handle.job_id, Code.WORKER, handle.abort_reason)
                return
            if not context.is_active():
                handle.abort_reason = "the coordinator went away"
                return
            if time.monotonic() > deadline:
                limit = f"{self.config.job_timeout_s:.0f} s"
                handle.abort_reason = f"time limit of {limit} exceeded"
                yield self._failure(handle.job_id, Code.TIMEOUT,
                                    f"the job exceeded the worker's time limit of {limit} "
                                    f"{raised_by('job_timeout_s')}")
                return
            try:
                event = handle.events.get(timeout=0.2)
            except queue.Empty:
                continue
            phase = phase_of(event)
            if isinstance(event, Ready):  # before the coordinator hears of it: peers follow
                handle.socket = event.socket
            if phase in (Phase.RELEASED, Phase.DONE):
                self._record_release(handle.job_id)
            if phase is Phase.DONE:  # before the coordinator hears of it: it seals next
                self._finished(handle)
            if phase is Phase.EXITED and handle.abort_reason is not None:
                continue  # it ended as it was told to: the loop's first check reports it
            if phase is Phase.EXITED:
                handle.abort_reason = "the job process ended unexpectedly"
                yield self._failure(handle.job_id, Code.INTERNAL, handle.abort_reason)
                return
            yield self._event(handle.job_id, event)
            if isinstance(event, Failed):
                self.audit.append(AuditEvent.JOB_ABORTED, job=handle.job_id, code=event.code,
                                  reason=event.message)
                handle.audited = True
                return
            if phase is Phase.DONE:  # the job process recorded its own end
                handle.audited = True
                return

    def _event(self, job_id: str, event: JobEvent) -> Event:
        msg = Event(job_id=job_id, party=self.config.name, phase=phase_of(event).to_proto())
        if isinstance(event, Progress):
            msg.detail = event.detail
        elif isinstance(event, Ready):
            msg.endpoint = self.peer_address  # the job's peers come through this worker
            msg.floors.CopyFrom(rules_to_proto(event.floors))
        elif isinstance(event, ReleaseShares):
            msg.release.keep.CopyFrom(tensor_to_proto(event.keep))
            msg.release.value.CopyFrom(tensor_to_proto(event.value))
            msg.release.nonce = event.nonce
        elif isinstance(event, Done):
            msg.head.CopyFrom(common_pb2.AuditHead(**event.head.as_dict()))
        elif isinstance(event, Failed):
            msg.failure.CopyFrom(failure_to_proto(event.party, event.code, event.message))
        return msg

    def Start(self, request: worker_pb2.StartRequest, context: grpc.ServicerContext
              ) -> worker_pb2.StartReply:  # noqa: N802
        caller = require_peer(context, ["coordinator"]).name
        handle = self.jobs.get(request.job_id)
        if handle is None or handle.coordinator != caller:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no job {request.job_id[:64]!r} from {caller}")
        problem = _start_problem(request, handle.parties)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        order = StartOrder(endpoints=dict(request.peers), dealer_address=request.dealer_address,
                           rules=rules_from_proto(request.disclosure))
        self.audit.append(AuditEvent.JOB_START, job=request.job_id, peers=len(order.endpoints),
                          min_cell=order.rules.min_cell,
                          min_contributors=order.rules.min_contributors,
                          suppress_zero=order.rules.suppress_zero)
        if not handle.send(order):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job process has ended")
        return worker_pb2.StartReply()

    def Abort(self, request: worker_pb2.AbortRequest, context: grpc.ServicerContext
              ) -> worker_pb2.AbortReply:  # noqa: N802
        caller = require_peer(context, ["coordinator"]).name
        problem = job_id_problem(request.job_id)
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        reason = (request.reason or "aborted by the coordinator")[:MAX_REASON]
        with self._lock:
            handle = self.jobs.get(request.job_id)
            if handle is None:
                # The abort may overtake the submission: refuse the job if it arrives later.
                self._aborted.append(request.job_id)
                return worker_pb2.AbortReply()
        if handle.coordinator == caller and handle.abort_reason is None:
            log.warning("aborting job %s: %s", handle.job_id, reason)
            handle.abort_reason = reason
            handle.send(AbortOrder(reason))
        return worker_pb2.AbortReply()

    def Seal(self, request: worker_pb2.SealRequest, context: grpc.ServicerContext
             ) -> worker_pb2.SealReply:  # noqa: N802
        """The coordinator's log head after a job that finished here: pinned in this
        party's log, so the coordinator cannot drop or rewrite its entries of the job."""
        caller = require_peer(context, ["coordinator"]).name
        head = request.head
        problem = job_id_problem(request.job_id) or (
            "no log head" if not request.HasField("head") else
            head_problem(head.member, head.seq, head.hash, head.sig))
        if problem is None and head.member != caller:
            problem = f"{caller} sent the log head of {head.member!r}"
        if problem:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        with self._lock:
            if self._sealable.get(request.job_id) != caller:
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"no finished job {request.job_id} from {caller} to seal")
            del self._sealable[request.job_id]  # sealed once
        # This worker holds no federation file, so it has no audit key of the coordinator
        # to check the signature with; `mpc audit verify` checks it against the log.
        pinned = Head(head.member, head.seq, head.hash, head.sig)
        self.audit.append(AuditEvent.MEMBER_HEAD, job=request.job_id, member_role=COORDINATOR_ROLE,
                          head=pinned.as_dict())
        return worker_pb2.SealReply()

    def stop(self, reason: str = "the worker is shutting down") -> None:
        """Abort every job and end its process (killed if it has not ended within
        JOB_END_GRACE_S), for a worker that exits: no job process outlives it, each
        coordinator hears why (its stream's last event), and no new job starts."""
        with self._lock:
            self._stopping = reason
            handles = list(self.jobs.values())
        for handle in handles:
            if handle.abort_reason is None:
                log.warning("aborting job %s: %s", handle.job_id, reason)
                handle.worker_stops = True
                handle.abort_reason = reason
                handle.send(AbortOrder(reason))
        deadline = time.monotonic() + JOB_END_GRACE_S
        for handle in handles:
            handle.kill(grace_s=max(0.0, deadline - time.monotonic()))
            self._finish(handle, handle.abort_reason)  # audited before the worker's stop
        if self._peer_dir is not None:
            shutil.rmtree(self._peer_dir, ignore_errors=True)
        stop_forkserver()

    def _finished(self, handle: JobHandle) -> None:
        with self._lock:
            self._sealable[handle.job_id] = handle.coordinator
            while len(self._sealable) > MAX_SEALABLE:
                self._sealable.popitem(last=False)

    def _record_release(self, job_id: str) -> None:
        """Data left this party for this job: its ledger entry becomes permanent."""
        release = self.ledger.commit(job_id)
        if release is not None:
            self.audit.append(AuditEvent.RELEASE_RECORDED, **release.fields())

    def _on_stream_end(self, handle: JobHandle) -> None:
        """gRPC's callback when the Submit stream ends for any reason. A coordinator that
        vanished ends the stream without resuming our generator, so this is what notices."""
        if not handle.audited and handle.abort_reason is None:
            handle.abort_reason = "the coordinator went away"
        threading.Thread(target=self._finish, args=(handle, handle.abort_reason),
                         daemon=True).start()

    def _finish(self, handle: JobHandle, abort_reason: str | None) -> None:
        """End the job process (asking it to abort first if it has not ended) and audit;
        once per job, whoever gets here first (the stream's end or its callback)."""
        with handle.lock:
            if handle.finished:
                return
            handle.finished = True
            record = abort_reason is not None and not handle.audited
            handle.audited = True
        if record:
            assert abort_reason is not None  # (record says so)
            log.warning("job %s aborted: %s", handle.job_id, abort_reason)
            self.audit.append(AuditEvent.JOB_ABORTED, job=handle.job_id, code=Code.ABORTED,
                              reason=abort_reason)
            handle.send(AbortOrder(abort_reason))
        self.ledger.cancel(handle.job_id)  # a no-op once the release is recorded
        handle.kill()
        handle.conn.close()
        if handle.socket is not None and self._peer_dir is not None:
            # A job process leaves by os._exit, so its socket file stays behind.
            Path(handle.socket).unlink(missing_ok=True)
        with self._lock:
            self.jobs.pop(handle.job_id, None)


def _names_problem(spec: UseCaseSpec) -> str | None:
    """What is wrong with the member names a spec gives, if anything: they go into this
    party's audit log and to its peers, so only well-formed names do."""
    for name in (*spec.parties, *(r for r in spec.recipients if r != COORDINATOR)):
        problem = name_problem(name)
        if problem:
            return f"the spec names a party badly: {problem}"
    return None


def _start_problem(request: worker_pb2.StartRequest, parties: int) -> str | None:
    """What is wrong with a start order, if anything."""
    if set(request.peers) != set(range(parties)):
        return f"the order names ranks {sorted(request.peers)[:20]}, expected 0 to {parties - 1}"
    for address in (*request.peers.values(), request.dealer_address):
        problem = address_problem(address)
        if problem:
            return problem
    rules = request.disclosure
    if not (1 <= rules.min_cell <= 10**9 and 1 <= rules.min_contributors <= parties):
        return (f"disclosure rules out of range (min_cell {rules.min_cell}, min_contributors "
                f"{rules.min_contributors})")
    return None


def start_worker(config: PartyConfig, identity: TlsIdentity, audit: AuditLog,
                 max_workers: int | None = None) -> tuple[grpc.Server, int, WorkerService]:
    service = WorkerService(config, audit)
    # Each call holds a thread while it lasts: a job's Submit stream, and every relayed
    # peer stream of it (up to max_parties - 1). Too few threads would stall a job.
    limits = config.limits
    threads = max_workers or 32 + limits.max_concurrent_jobs * limits.max_parties
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads,
                                                    thread_name_prefix="worker"),
                         options=SERVER_OPTIONS)
    worker_pb2_grpc.add_WorkerServicer_to_server(service, server)
    server.add_generic_rpc_handlers((service.router.handler(),))
    port = bind_server(server, identity, config.listen)
    service.peer_address = f"{config.peer_advertise}:{port}"
    server.start()
    threading.Thread(target=warm_up, daemon=True, name="warm-up").start()
    return server, port, service
