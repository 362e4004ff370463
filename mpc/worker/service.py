"""The worker service: a data party's long-running gRPC endpoint for coordinators.

Thin servicer, as the project's transport rule says: it checks who calls, checks
the local policy, and runs each job in a child process of its own (isolation,
time limit, CrypTen's global state), relaying the job's events to the
coordinator. A job that fails, times out or loses its coordinator is killed;
the worker keeps serving.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import re
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from mpc.audit.log import AuditLog
from mpc.config.party import PartyConfig
from mpc.config.spec import DisclosureRules
from mpc.errors import PolicyRefused
from mpc.proto import common_pb2, worker_pb2, worker_pb2_grpc
from mpc.transport.tls import SERVER_OPTIONS, TlsIdentity, bind_server, require_peer
from mpc.worker.job_process import StartOrder, run_job
from mpc.worker.policy import approve

log = logging.getLogger(__name__)
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_SPEC_BYTES = 256 * 1024
Event = worker_pb2.JobEvent
PHASES = {
    "accepted": Event.ACCEPTED, "local_table": Event.LOCAL_TABLE, "ready": Event.READY,
    "connected": Event.CONNECTED, "sharing": Event.SHARING, "computing": Event.COMPUTING,
    "disclosure": Event.DISCLOSURE, "released": Event.RELEASED, "done": Event.DONE,
    "failed": Event.FAILED,
}


def disclosure_proto(rules: DisclosureRules) -> worker_pb2.Disclosure:
    return worker_pb2.Disclosure(min_cell=rules.min_cell, suppress_zero=rules.suppress_zero,
                                 min_contributors=rules.min_contributors)


def disclosure_from_proto(msg: worker_pb2.Disclosure) -> DisclosureRules:
    return DisclosureRules(min_cell=msg.min_cell, suppress_zero=msg.suppress_zero,
                           min_contributors=msg.min_contributors)


@dataclass
class JobHandle:
    job_id: str
    coordinator: str
    process: Any
    conn: Any
    events: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)
    started: float = field(default_factory=time.monotonic)
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, kind: str, payload: Any) -> bool:
        with self.lock:
            try:
                self.conn.send((kind, payload))
                return True
            except (OSError, BrokenPipeError):
                return False

    def pump(self) -> None:
        """Move the job's events from its pipe to the queue (on a thread)."""
        try:
            while True:
                self.events.put(self.conn.recv())
        except (EOFError, OSError):
            self.events.put({"phase": "exited"})

    def kill(self, grace_s: float = 2.0) -> None:
        self.process.join(timeout=grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


class WorkerService(worker_pb2_grpc.WorkerServicer):
    def __init__(self, config: PartyConfig, audit: AuditLog) -> None:
        self.config = config
        self.audit = audit
        self.jobs: dict[str, JobHandle] = {}
        self._lock = threading.Lock()
        self._mp = mp.get_context("spawn")  # never fork a process that runs gRPC

    def _failure(self, job_id: str, code: str, message: str, party: str | None = None) -> Event:
        return Event(job_id=job_id, party=self.config.name, phase=Event.FAILED,
                     failure=common_pb2.Failure(party=party or self.config.name, code=code,
                                                message=message))

    def Submit(self, request: worker_pb2.SubmitRequest, context: grpc.ServicerContext
               ) -> Iterator[Event]:  # noqa: N802
        coordinator = require_peer(context, ["coordinator"]).name
        job_id = request.job_id
        if not JOB_ID.match(job_id) or len(request.spec_toml) > MAX_SPEC_BYTES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed job id or oversized spec")
        self.audit.append("job_received", job=job_id, coordinator=coordinator,
                          spec_bytes=len(request.spec_toml))
        try:
            spec = approve(self.config, request.spec_toml, coordinator)
        except PolicyRefused as exc:
            self.audit.append("policy_decision", job=job_id, approved=False, reason=exc.reason)
            log.warning("job %s refused: %s", job_id, exc.reason)
            yield self._failure(job_id, "POLICY", str(exc))
            return
        self.audit.append("policy_decision", job=job_id, approved=True, usecase=spec.name,
                          spec_sha256=spec.sha256)
        with self._lock:
            if job_id in self.jobs:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, f"job {job_id} already exists")
            parent, child = self._mp.Pipe()
            process = self._mp.Process(target=run_job, name=f"job-{job_id[:8]}", daemon=True,
                                       args=(child, self.config, request.spec_toml, job_id,
                                             coordinator))
            process.start()
            child.close()
            handle = JobHandle(job_id, coordinator, process, parent)
            self.jobs[job_id] = handle
        threading.Thread(target=handle.pump, daemon=True, name=f"pump-{job_id[:8]}").start()
        log.info("job %s (%s) accepted from %s", job_id, spec.name, coordinator)
        yield Event(job_id=job_id, party=self.config.name, phase=Event.ACCEPTED)
        try:
            yield from self._relay(handle, context)
        finally:
            self._finish(handle)

    def _relay(self, handle: JobHandle, context: grpc.ServicerContext) -> Iterator[Event]:
        deadline = handle.started + self.config.job_timeout_s
        while True:
            if not context.is_active():
                self._abort(handle, "the coordinator went away")
                return
            if time.monotonic() > deadline:
                self._abort(handle, f"time limit of {self.config.job_timeout_s:.0f} s exceeded")
                yield self._failure(handle.job_id, "TIMEOUT", "the job exceeded the worker's "
                                    f"time limit of {self.config.job_timeout_s:.0f} s")
                return
            try:
                event = handle.events.get(timeout=0.2)
            except queue.Empty:
                continue
            phase = event["phase"]
            if phase == "exited":
                yield self._failure(handle.job_id, "INTERNAL", "the job process ended unexpectedly")
                return
            yield self._event(handle.job_id, event)
            if phase in ("done", "failed"):
                if phase == "failed":
                    self.audit.append("job_aborted", job=handle.job_id, code=event["code"],
                                      reason=event["message"])
                else:
                    self.audit.append("job_end", job=handle.job_id,
                                      dealer_requests=event.get("requests", 0))
                return

    def _event(self, job_id: str, event: dict[str, Any]) -> Event:
        phase = event["phase"]
        msg = Event(job_id=job_id, party=self.config.name, phase=PHASES[phase],
                    detail=str(event.get("detail", "")))
        if phase == "ready":
            msg.endpoint = event["endpoint"]
            msg.floors.CopyFrom(disclosure_proto(event["floors"]))
        elif phase == "released":
            for name in ("keep", "value"):
                array = event[name]
                getattr(msg.release, name).CopyFrom(common_pb2.Tensor(
                    dtype="int64", shape=list(array.shape), data=array.astype("<i8").tobytes()))
        elif phase == "failed":
            msg.failure.CopyFrom(common_pb2.Failure(party=event["party"], code=event["code"],
                                                    message=event["message"]))
        return msg

    def Start(self, request: worker_pb2.StartRequest, context: grpc.ServicerContext
              ) -> worker_pb2.StartReply:  # noqa: N802
        caller = require_peer(context, ["coordinator"]).name
        handle = self.jobs.get(request.job_id)
        if handle is None or handle.coordinator != caller:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id} from {caller}")
        order = StartOrder(endpoints=dict(request.peers), dealer_address=request.dealer_address,
                           rules=disclosure_from_proto(request.disclosure))
        self.audit.append("job_start", job=request.job_id, peers=len(order.endpoints),
                          min_cell=order.rules.min_cell,
                          min_contributors=order.rules.min_contributors,
                          suppress_zero=order.rules.suppress_zero)
        if not handle.send("start", order):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job process has ended")
        return worker_pb2.StartReply()

    def Abort(self, request: worker_pb2.AbortRequest, context: grpc.ServicerContext
              ) -> worker_pb2.AbortReply:  # noqa: N802
        caller = require_peer(context, ["coordinator"]).name
        handle = self.jobs.get(request.job_id)
        if handle is not None and handle.coordinator == caller:
            self._abort(handle, request.reason or "aborted by the coordinator")
        return worker_pb2.AbortReply()

    def _abort(self, handle: JobHandle, reason: str) -> None:
        with handle.lock:
            if handle.finished:
                return
        log.warning("aborting job %s: %s", handle.job_id, reason)
        self.audit.append("job_aborted", job=handle.job_id, code="ABORTED", reason=reason)
        handle.send("abort", reason)
        threading.Thread(target=self._finish, args=(handle,), daemon=True).start()

    def _finish(self, handle: JobHandle) -> None:
        with handle.lock:
            if handle.finished:
                return
            handle.finished = True
        handle.kill()
        handle.conn.close()
        with self._lock:
            self.jobs.pop(handle.job_id, None)


def start_worker(config: PartyConfig, identity: TlsIdentity, audit: AuditLog,
                 max_workers: int = 32) -> tuple[grpc.Server, int, WorkerService]:
    service = WorkerService(config, audit)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="worker"),
                         options=SERVER_OPTIONS)
    worker_pb2_grpc.add_WorkerServicer_to_server(service, server)
    port = bind_server(server, identity, config.listen)
    server.start()
    return server, port, service
