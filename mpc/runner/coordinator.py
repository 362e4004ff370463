"""The coordinator: plans a job, dispatches it to the parties' workers, gathers the release.

Job state (coarse, drives the logic): pending -> running -> succeeded | failed;
every party's phase (fine, for people) goes through `_set_phase`, which feeds the
progress display. A failure anywhere aborts the job everywhere; the coordinator
reconstructs the table only when every party has sent its release shares, so a
failed job releases nothing.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
import torch

from mpc.audit.digests import message_digest
from mpc.audit.events import AuditEvent
from mpc.audit.log import AuditLog
from mpc.config.federation import Federation
from mpc.config.rules import applied_rules
from mpc.config.spec import COORDINATOR, DisclosureRules, UseCaseSpec
from mpc.errors import INTERRUPTED, Code, JobFailed, JobInterrupted
from mpc.phases import Phase
from mpc.proto import common_pb2, worker_pb2, worker_pb2_grpc
from mpc.report.table import ReleasedTable, reconstruct
from mpc.transport.messages import (
    failure_from_proto,
    rules_from_proto,
    rules_to_proto,
    tensor_from_chunks,
)
from mpc.transport.tls import TlsIdentity, secure_channel
from mpc.transport.validate import head_problem, name_problem

Event = worker_pb2.JobEvent
ProgressFn = Callable[[str, Phase, str], None]  # party, phase, detail
ABORT_TIMEOUT_S = 5.0  # what one worker's answer to an abort may take


@dataclass
class _Party:
    name: str
    rank: int
    address: str
    channel: grpc.Channel
    stub: worker_pb2_grpc.WorkerStub
    phase: Phase = Phase.PENDING
    endpoint: str | None = None
    floors: DisclosureRules | None = None
    release: Any = None
    done: bool = False
    head: Any = None  # its audit log head once it is done


@dataclass
class JobOutcome:
    job_id: str
    spec: UseCaseSpec
    rules: DisclosureRules
    table: ReleasedTable | None  # None when the coordinator is not a recipient
    seconds: float
    phases: dict[str, Phase] = field(default_factory=dict)


class Coordinator:
    def __init__(self, federation: Federation, identity: TlsIdentity,
                 progress: ProgressFn | None = None, timeout_s: float = 900.0,
                 audit: AuditLog | None = None) -> None:
        self.federation = federation
        self.identity = identity
        self.progress = progress or (lambda party, phase, detail: None)
        self.timeout_s = timeout_s
        self.audit = audit

    def _record(self, event: AuditEvent, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.append(event, **fields)

    def run(self, spec: UseCaseSpec, job_id: str | None = None) -> JobOutcome:
        """Run one job. `job_id` is for tests only (workers and the dealer refuse an id they
        saw before); a job's id is otherwise always fresh."""
        job_id = job_id or uuid.uuid4().hex
        started = time.monotonic()
        parties = []
        for rank, name in enumerate(spec.parties):
            try:
                member = self.federation.party(name)
            except KeyError as exc:
                raise JobFailed(None, str(exc.args[0])) from None
            assert member.address is not None  # a party's is required (config/federation.py)
            channel = secure_channel(self.identity, member.address, name)
            parties.append(_Party(name, rank, member.address, channel,
                                  worker_pb2_grpc.WorkerStub(channel)))
        events: queue.Queue[tuple[_Party, Event | grpc.RpcError]] = queue.Queue()
        calls = []
        self._record(AuditEvent.JOB_SUBMITTED, job=job_id, usecase=spec.name,
                     spec_sha256=spec.sha256, parties=list(spec.parties),
                     recipients=list(spec.recipients), spec=spec.text.decode())
        try:
            for p in parties:
                call = p.stub.Submit(worker_pb2.SubmitRequest(job_id=job_id,
                                                              spec_toml=spec.text),
                                     timeout=self.timeout_s)
                calls.append(call)
                threading.Thread(target=self._pump, args=(p, call, events), daemon=True).start()
            for p in parties:
                self._set_phase(p, Phase.SUBMITTED)
            rules = self._prepare(spec, parties, events)
            self._start(parties, job_id, rules)
            shares = self._gather(spec, parties, events, job_id)
        except JobFailed as exc:
            exc.job_id = job_id
            self._record(AuditEvent.JOB_ABORTED, job=job_id, party=exc.party, reason=exc.cause)
            self._abort_all(parties, job_id, "the job failed at another party")
            raise
        except KeyboardInterrupt:
            # Ctrl-C: the job ends here as an abort, in the log and at every party, so the
            # audit reads an interruption, not a log cut in the middle of a job.
            self._record(AuditEvent.JOB_ABORTED, job=job_id, party=None, reason=INTERRUPTED)
            self._abort_all(parties, job_id, INTERRUPTED)
            raise JobInterrupted(job_id) from None
        finally:
            for call in calls:
                call.cancel()
            for p in parties:
                p.channel.close()
        table = None
        if shares is not None:
            keep, value = reconstruct(shares[0], shares[1], spec.released_size)
            table = ReleasedTable.post_process(spec, rules, job_id, keep, value)
            self._record(AuditEvent.RESULT, job=job_id, **table.audit_fields())
        self._record(AuditEvent.PARTY_HEADS, job=job_id,
                     heads=[_head(p.head) for p in parties if p.head is not None])
        self._record(AuditEvent.JOB_END, job=job_id)
        self._seal(parties, job_id)
        return JobOutcome(job_id, spec, rules, table, time.monotonic() - started,
                          {p.name: p.phase for p in parties})

    def _seal(self, parties: list[_Party], job_id: str) -> None:
        """Hand every party the head of this coordinator's log, now that it holds the job's
        release and end: the parties pin it, so these entries cannot be dropped or rewritten
        later without the audit noticing. Best effort per party: the job has released."""
        if self.audit is None:
            return
        head = self.audit.head()
        order = worker_pb2.SealRequest(job_id=job_id, head=common_pb2.AuditHead(**head.as_dict()))
        for p in parties:
            with secure_channel(self.identity, p.address, p.name) as channel, \
                    contextlib.suppress(grpc.RpcError):
                worker_pb2_grpc.WorkerStub(channel).Seal(order, timeout=30)

    # ---- phases --------------------------------------------------------------------------
    @staticmethod
    def _pump(p: _Party, call: Any, events: queue.Queue) -> None:
        try:
            for event in call:
                events.put((p, event))
        except grpc.RpcError as exc:
            events.put((p, exc))

    def _set_phase(self, p: _Party, phase: Phase, detail: str = "") -> None:
        p.phase = phase
        self.progress(p.name, phase, detail)

    def _next(self, events: queue.Queue, deadline: float) -> tuple[_Party, Event]:
        """The next event; any failure anywhere ends the job here."""
        try:
            p, event = events.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise JobFailed(None, f"the job did not finish within {self.timeout_s:.0f} s "
                                  "(mpc run --timeout gives it longer; each party's own limit "
                                  "is job_timeout_s in its party.toml)") from None
        if isinstance(event, grpc.RpcError):
            raise self._root_cause(p, _rpc_failure(event), Code.WORKER, events)
        phase = Phase.from_proto(event.phase)
        if phase is Phase.FAILED:
            origin, code, message = failure_from_proto(event.failure)
            raise self._root_cause(p, message, code, events, origin=origin)
        if phase is not None:  # an unknown phase (a newer worker) changes nothing shown
            self._set_phase(p, phase, event.detail)
        return p, event

    def _root_cause(self, p: _Party, message: str, code: Code, events: queue.Queue,
                    origin: str = "") -> JobFailed:
        """A failure that only echoes another party's (lost peer, peer aborted) is
        reported as that party's failure if it arrives within a moment."""
        self._set_phase(p, Phase.FAILED, message)
        failures = [(_named(origin, p.name), code, message)]
        if code.echo:
            until = time.monotonic() + 3.0
            while time.monotonic() < until:
                try:
                    q, event = events.get(timeout=0.2)
                except queue.Empty:
                    continue
                if isinstance(event, grpc.RpcError):
                    failures.append((q.name, Code.WORKER, _rpc_failure(event)))
                elif event.phase == Event.FAILED:
                    their_party, their_code, their_message = failure_from_proto(event.failure)
                    failures.append((_named(their_party, q.name), their_code, their_message))
                else:
                    continue
                if not failures[-1][1].echo:
                    break
        party, _, cause = next((f for f in failures if not f[1].echo), failures[0])
        return JobFailed(party, cause.removeprefix(f"{party}: "))

    def _prepare(self, spec: UseCaseSpec, parties: list[_Party],
                 events: queue.Queue) -> DisclosureRules:
        deadline = time.monotonic() + self.timeout_s
        while not all(p.endpoint for p in parties):
            p, event = self._next(events, deadline)
            if event.phase == Event.READY:
                p.endpoint = event.endpoint
                p.floors = rules_from_proto(event.floors)
        floors = [p.floors for p in parties if p.floors is not None]
        assert len(floors) == len(parties)  # every party is ready, with its floors
        return applied_rules(spec.disclosure, floors)

    def _start(self, parties: list[_Party], job_id: str, rules: DisclosureRules) -> None:
        endpoints = {p.rank: p.endpoint for p in parties if p.endpoint is not None}
        assert len(endpoints) == len(parties)  # every party is ready, with its endpoint
        order = worker_pb2.StartRequest(
            job_id=job_id, peers=endpoints,
            dealer_address=self.federation.dealer.address,
            disclosure=rules_to_proto(rules))
        self._record(AuditEvent.JOB_START, job=job_id, rules=asdict(rules))
        for p in parties:
            try:
                p.stub.Start(order, timeout=30)
            except grpc.RpcError as exc:
                raise JobFailed(p.name, f"could not start the job ({exc.details()})") from None

    def _gather(self, spec: UseCaseSpec, parties: list[_Party], events: queue.Queue,
                job_id: str) -> tuple[list[torch.Tensor], list[torch.Tensor]] | None:
        deadline = time.monotonic() + self.timeout_s
        while not all(p.done for p in parties):
            p, event = self._next(events, deadline)
            if event.phase == Event.RELEASED:
                p.release = event.release
            elif event.phase == Event.DONE:
                p.done = True
                h = event.head
                well_formed = event.HasField("head") and h.member == p.name and \
                    head_problem(h.member, h.seq, h.hash, h.sig) is None
                p.head = h if well_formed else None
        if COORDINATOR not in spec.recipients:
            return None
        keep, value = [], []
        for p in parties:
            if p.release is None:
                raise JobFailed(p.name, "finished without sending its release shares")
            shares = {name: tensor_from_chunks([getattr(p.release, name)], f"party {p.name}")
                      for name in ("keep", "value")}
            self._record(AuditEvent.RELEASE_RECEIVED, job=job_id, party=p.name, digests={
                name: message_digest(job_id, p.name, self.identity.name, seq,
                                     p.release.nonce, t.numpy().astype("<i8").tobytes())
                for seq, (name, t) in enumerate(shares.items())})
            keep.append(shares["keep"])
            value.append(shares["value"])
        return keep, value

    def _abort_all(self, parties: list[_Party], job_id: str, reason: str) -> None:
        """Order every party to abort at once, then wait for their answers: ordered in
        turn, every worker slow to answer (busy, or unreachable until the timeout) would add
        up to ABORT_TIMEOUT_S to the time a refusal that arrived at once takes to report."""
        order = worker_pb2.AbortRequest(job_id=job_id, reason=reason)

        def abort(p: _Party) -> None:
            # An unreachable worker aborts on its own when the job's stream drops.
            with contextlib.suppress(grpc.RpcError):
                p.stub.Abort(order, timeout=ABORT_TIMEOUT_S)

        threads = [threading.Thread(target=abort, args=(p,), daemon=True,
                                    name=f"abort-{p.name}") for p in parties]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def _named(claimed: str, reporter: str) -> str:
    """The party a worker names as where its failure arose, if that is a member name at
    all (it goes into this coordinator's audit log); else the reporting party."""
    return claimed if claimed and name_problem(claimed) is None else reporter


def _head(msg: Any) -> dict[str, Any]:
    return {"member": msg.member, "seq": msg.seq, "hash": msg.hash, "sig": msg.sig}


def _rpc_failure(exc: grpc.RpcError) -> str:
    code = exc.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN):
        return f"its worker is unreachable or gone ({code.name}: {exc.details()})"
    return f"its worker refused the request ({code.name}: {exc.details()})"
