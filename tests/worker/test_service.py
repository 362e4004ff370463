"""WorkerService on its own: Submit, Start, Abort and Seal against a real party config and
audit log in a temporary folder, with the job process played by the test over a real pipe
(the service's `start_job` seam) and a fake gRPC context that presents real certificates.
No processes, no network, no TLS handshake: every event the service relays and every
audit entry it writes is checked as it comes."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.events import COORDINATOR_ROLE, AuditEvent
from mpc.audit.log import AuditLog, Head, iter_entries
from mpc.config.party import PartyConfig, load_party_config
from mpc.config.rules import DisclosureRules
from mpc.config.spec import UseCaseSpec
from mpc.errors import Code, ConfigError
from mpc.phases import Phase
from mpc.proto import common_pb2, worker_pb2
from mpc.transport.messages import failure_from_proto, rules_from_proto, rules_to_proto
from mpc.transport.pki import issue_member, make_ca
from mpc.transport.router import Route
from mpc.worker.job_events import (
    AbortOrder,
    Done,
    Failed,
    JobEvent,
    Order,
    Progress,
    Ready,
    ReleaseShares,
    StartOrder,
)
from mpc.worker.service import STARTING_JOB_PROCESS, WorkerService
from tests.helpers import spec_text

PARTY = "hospital_a"
PARTIES = ("hospital_a", "hospital_b", "hospital_c")
COORDINATOR = "coordinator"
OTHER = "other-coord"  # a second coordinator certificate the policy does not name
JOB = "job-0000000000000001"
SPEC = spec_text("product-use", PARTIES, group_by=("product", "line"))
ENDPOINTS = {0: "127.0.0.1:9100", 1: "127.0.0.1:9101", 2: "127.0.0.1:9102"}
DEALER = "127.0.0.1:9200"
SOCKET = "/run/mpc-worker/job.sock"  # where a job process would take its peers
FLOORS = DisclosureRules(min_cell=15, min_contributors=2)


# ---- the fakes: a job process over a real pipe, and a gRPC context ----------------------

class FakeJob:
    """What run_job does, played by the test: `emit` sends an event up the pipe, `exit`
    ends the "process" (its end of the pipe closes, as when run_job returns). As a process
    (`join`, `is_alive`, `kill`, what JobHandle uses) it ends when it has read an abort
    order, unless `stubborn`; `kill` always ends it."""

    def __init__(self, spec: UseCaseSpec, job_id: str, coordinator: str,
                 stubborn: bool = False) -> None:
        self.spec, self.job_id, self.coordinator = spec, job_id, coordinator
        self.worker_end, self._child = Pipe()
        self.stubborn = stubborn
        self.alive = True
        self.killed = False
        self.joins: list[float | None] = []
        self._received: list[Order] = []
        self._lock = threading.Lock()

    def emit(self, event: JobEvent) -> None:
        self._child.send(event)

    def orders(self) -> list[Order]:
        """Every order the worker sent down so far."""
        with self._lock:
            self._drain()
            return list(self._received)

    def exit(self) -> None:
        with self._lock:
            self._drain()
            self._close()

    def _drain(self) -> None:
        try:
            while self.alive and self._child.poll():
                self._received.append(self._child.recv())
        except (EOFError, OSError):
            pass

    def _close(self) -> None:
        if self.alive:
            self.alive = False
            self._child.close()

    # the process interface
    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout: float | None = None) -> None:
        with self._lock:
            self.joins.append(timeout)
            self._drain()
            if not self.stubborn and any(isinstance(o, AbortOrder) for o in self._received):
                self._close()

    def kill(self) -> None:
        with self._lock:
            self.killed = True
            self._close()


class Aborted(Exception):  # noqa: N818 - what grpc's context.abort raises, by another name
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """The little of grpc.ServicerContext the service uses: the caller's certificate (as
    the TLS handshake verified it), whether the call is active, abort, callbacks."""

    def __init__(self, cert_pem: bytes) -> None:
        self.cert_pem = cert_pem
        self.active = True
        self.callbacks: list[Callable[[], None]] = []

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self.cert_pem]}

    def peer(self) -> str:
        return "ipv4:127.0.0.1:40000"

    def is_active(self) -> bool:
        return self.active

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)

    def end(self) -> None:
        """The RPC terminated (the coordinator hung up): gRPC runs the callbacks."""
        self.active = False
        for callback in self.callbacks:
            callback()


# ---- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real certificates of two coordinators and a party, as callers present them."""
    out = tmp_path_factory.mktemp("certs")
    ca, ca_key = make_ca(out)
    return {name: issue_member(out, name, role, ca, ca_key).cert.read_bytes()
            for name, role in [(COORDINATOR, "coordinator"), (OTHER, "coordinator"),
                               ("hospital_b", "party")]}


def party_config(root: Path, **fields: Any) -> PartyConfig:
    config: dict[str, Any] = {
        "name": PARTY, "listen": "127.0.0.1:7001",
        "tls": {"ca": "certs/ca.pem", "cert": f"certs/{PARTY}.pem", "key": f"certs/{PARTY}.key"},
        "signing": {"key": f"certs/{PARTY}.sign.key"},
        "audit": {"log": f"logs/{PARTY}.jsonl"},
        "datasets": {"treatments": {"path": "data/treatments.csv",
                                    "bounds": {"ledger": False}}},
        "policy": {"coordinators": [COORDINATOR], "usecases": ["product-use"],
                   "min_cell_floor": FLOORS.min_cell,
                   "min_contributors_floor": FLOORS.min_contributors},
        "job_timeout_s": 20.0,  # a test that goes wrong ends, it does not hang
        **fields,
    }
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{PARTY}.toml"
    path.write_text(tomli_w.dumps(config))
    return load_party_config(path)


class World:
    """A worker service on a real config and audit log, whose jobs are FakeJobs."""

    def __init__(self, root: Path, certs: dict[str, bytes], stubborn: bool = False,
                 **config: Any) -> None:
        self.root, self.certs, self.stubborn = root, certs, stubborn
        self.config = party_config(root, **config)
        self.key = Ed25519PrivateKey.generate()
        self.audit = AuditLog(self.config.audit_log, self.key, PARTY, "party")
        self.jobs: list[FakeJob] = []
        self.streams: list[Iterator[worker_pb2.JobEvent]] = []
        self.service = self.restart()

    def restart(self) -> WorkerService:
        """A new service on the same config and log (a worker restarted)."""
        return WorkerService(self.config, self.audit, start_job=self._start_job)

    def _start_job(self, config: PartyConfig, spec: UseCaseSpec, job_id: str,
                   coordinator: str) -> tuple[FakeJob, Any]:
        assert config is self.config
        job = FakeJob(spec, job_id, coordinator, stubborn=self.stubborn)
        self.jobs.append(job)
        return job, job.worker_end

    def context(self, caller: str = COORDINATOR) -> FakeContext:
        return FakeContext(self.certs[caller])

    def submit(self, job_id: str = JOB, spec: bytes = SPEC, caller: str = COORDINATOR,
               context: FakeContext | None = None,
               service: WorkerService | None = None) -> Iterator[worker_pb2.JobEvent]:
        stream = (service or self.service).Submit(
            worker_pb2.SubmitRequest(job_id=job_id, spec_toml=spec),
            context or self.context(caller))
        self.streams.append(stream)
        return stream

    def start(self, job_id: str = JOB, peers: dict[int, str] | None = None,
              dealer: str = DEALER, rules: DisclosureRules | None = None,
              caller: str = COORDINATOR) -> worker_pb2.StartReply:
        request = worker_pb2.StartRequest(
            job_id=job_id, peers=ENDPOINTS if peers is None else peers, dealer_address=dealer,
            disclosure=rules_to_proto(rules or DisclosureRules(min_cell=15,
                                                               min_contributors=2)))
        return self.service.Start(request, self.context(caller))

    def abort(self, job_id: str = JOB, reason: str = "", caller: str = COORDINATOR
              ) -> worker_pb2.AbortReply:
        return self.service.Abort(worker_pb2.AbortRequest(job_id=job_id, reason=reason),
                                  self.context(caller))

    def seal(self, head: Head | None, job_id: str = JOB, caller: str = COORDINATOR
             ) -> worker_pb2.SealReply:
        request = worker_pb2.SealRequest(job_id=job_id)
        if head is not None:
            request.head.CopyFrom(common_pb2.AuditHead(**head.as_dict()))
        return self.service.Seal(request, self.context(caller))

    def entries(self, job_id: str = JOB) -> list[dict[str, Any]]:
        return [e for e in iter_entries(self.config.audit_log) if e.get("job") == job_id]

    def events(self, job_id: str = JOB) -> list[str]:
        return [e["event"] for e in self.entries(job_id)]

    def close(self) -> None:
        for stream in self.streams:
            stream.close()  # type: ignore[attr-defined]
        for job in self.jobs:
            job.exit()


@pytest.fixture()
def world(tmp_path: Path, certs: dict[str, bytes]) -> Iterator[World]:
    w = World(tmp_path, certs)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture()
def make_world(tmp_path: Path, certs: dict[str, bytes]) -> Iterator[Callable[..., World]]:
    made: list[World] = []

    def make(**options: Any) -> World:
        made.append(World(tmp_path / f"w{len(made)}", certs, **options))
        return made[-1]

    try:
        yield make
    finally:
        for w in made:
            w.close()


def phase(event: worker_pb2.JobEvent) -> Phase | None:
    return Phase.from_proto(event.phase)


def failure(event: worker_pb2.JobEvent) -> tuple[str, Code, str]:
    assert phase(event) is Phase.FAILED
    return failure_from_proto(event.failure)


def coordinator_head(root: Path, member: str = COORDINATOR) -> Head:
    log = AuditLog(root / f"{member}.jsonl", Ed25519PrivateKey.generate(), member,
                   "coordinator")
    log.append(AuditEvent.JOB_END, job=JOB)
    return log.head()


def accepted(world: World, **submit: Any) -> tuple[Iterator[worker_pb2.JobEvent], FakeJob]:
    """A submitted job, accepted: its stream and its job process."""
    stream = world.submit(**submit)
    first = next(stream)
    assert phase(first) is Phase.ACCEPTED and first.party == PARTY
    assert first.detail == STARTING_JOB_PROCESS  # what the coordinator shows until it reports
    return stream, world.jobs[-1]


def finished(world: World) -> list[worker_pb2.JobEvent]:
    """A job run to its end at this party: the events after ACCEPTED."""
    stream, job = accepted(world)
    job.emit(Ready(SOCKET, FLOORS))
    job.emit(Done(3, Head(PARTY, 7, "a" * 64, "s" * 86 + "==")))
    job.exit()
    return list(stream)


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ---- a job from submission to its end -----------------------------------------------------

def test_a_job_runs_and_the_worker_relays_every_event(world: World) -> None:
    stream, job = accepted(world)
    assert (job.spec.name, job.spec.text, job.job_id, job.coordinator) == \
        ("product-use", SPEC, JOB, COORDINATOR)
    assert set(world.service.jobs) == {JOB}

    job.emit(Progress(Phase.LOCAL_TABLE, "9 cells"))
    assert world.service.router.lookup(JOB) == Route(PARTIES, 0, None)  # no socket yet
    job.emit(Ready(SOCKET, FLOORS))
    local, ready = next(stream), next(stream)
    assert (phase(local), local.detail) == (Phase.LOCAL_TABLE, "9 cells")
    # Peers reach the job through the worker's own port, never one of the job's.
    assert phase(ready) is Phase.READY and ready.endpoint == "127.0.0.1:7001"
    assert world.service.router.lookup(JOB) == Route(PARTIES, 0, SOCKET)
    assert rules_from_proto(ready.floors) == FLOORS

    rules = DisclosureRules(min_cell=15, suppress_zero=True, min_contributors=2)
    assert world.start(rules=rules) == worker_pb2.StartReply()
    assert job.orders() == [StartOrder(ENDPOINTS, DEALER, rules)]

    keep = np.array([1, -1, 0, 5], dtype=np.int64)
    value = np.array([-7, 3, 2**40, 0], dtype=np.int64)
    head = Head(PARTY, 12, "b" * 64, "c" * 86 + "==")
    for event in (Progress(Phase.CONNECTED), Progress(Phase.COMPUTING, "blinding"),
                  ReleaseShares(keep, value, b"nonce-16-bytes.."), Done(4, head)):
        job.emit(event)
    job.exit()
    rest = list(stream)
    assert [(phase(e), e.detail) for e in rest] == [
        (Phase.CONNECTED, ""), (Phase.COMPUTING, "blinding"), (Phase.RELEASED, ""),
        (Phase.DONE, "")]
    assert {(e.job_id, e.party) for e in rest} == {(JOB, PARTY)}
    released = rest[2].release
    assert np.frombuffer(released.keep.data, "<i8").tolist() == keep.tolist()
    assert np.frombuffer(released.value.data, "<i8").tolist() == value.tolist()
    assert (released.keep.dtype, list(released.keep.shape), released.nonce) == \
        ("int64", [4], b"nonce-16-bytes..")
    assert (rest[3].head.member, rest[3].head.seq, rest[3].head.hash, rest[3].head.sig) == \
        (head.member, head.seq, head.hash, head.sig)

    assert world.events() == [AuditEvent.JOB_RECEIVED, AuditEvent.POLICY_DECISION,
                              AuditEvent.JOB_START, AuditEvent.RELEASE_RECORDED]
    received, decision, start, release = world.entries()
    assert received["coordinator"] == COORDINATOR
    assert received["spec_sha256"] == hashlib.sha256(SPEC).hexdigest()
    assert decision["approved"] is True and decision["parties"] == list(PARTIES)
    # the spec's min_cell 10 raised to this party's floors
    assert decision["rules"] == {"min_cell": 15, "suppress_zero": False,
                                 "min_contributors": 2, "sensitivity": 0}
    assert (start["peers"], start["min_cell"], start["min_contributors"],
            start["suppress_zero"]) == (3, 15, 2, True)
    assert release["usecase"] == "product-use" and release["parties"] == sorted(PARTIES)
    # it ended by itself: no abort order, no kill, and it is off the books
    assert job.orders() == [StartOrder(ENDPOINTS, DEALER, rules)]
    assert not job.killed and not world.service.jobs


def test_the_job_endpoint_is_the_workers_advertised_host_on_its_port(
        make_world: Callable[..., World]) -> None:
    world = make_world(peer_advertise="203.0.113.5")  # behind NAT: peers dial another host
    stream, job = accepted(world)
    job.emit(Ready(SOCKET, FLOORS))
    assert next(stream).endpoint == "203.0.113.5:7001"
    world.abort(reason="enough")
    assert list(stream) == []
    assert world.service.router.lookup(JOB) is None  # an ended job takes no more peers


def test_the_removed_peer_host_field_is_refused_with_its_reason(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="removed: job processes no longer listen on a host "
                                          "or port of their own") as refused:
        party_config(tmp_path, peer_host="0.0.0.0")
    assert refused.value.field == "peer_host"


def test_a_failure_of_the_job_is_relayed_with_its_origin_and_audited_once(
        world: World) -> None:
    stream, job = accepted(world)
    job.emit(Failed(Code.LOST, "hospital_b", "hospital_a lost the connection to hospital_b"))
    job.exit()
    events = list(stream)
    assert len(events) == 1
    assert failure(events[0]) == ("hospital_b", Code.LOST,
                                  "hospital_a lost the connection to hospital_b")
    aborted = [e for e in world.entries() if e["event"] == AuditEvent.JOB_ABORTED]
    assert [(e["code"], e["reason"]) for e in aborted] == \
        [(Code.LOST, "hospital_a lost the connection to hospital_b")]
    assert AuditEvent.RELEASE_RECORDED not in world.events()
    assert job.orders() == [] and not job.killed  # it ended itself; nothing to abort


def test_a_release_is_recorded_when_it_leaves_even_if_the_job_fails_later(
        world: World) -> None:
    stream, job = accepted(world)
    share = np.zeros(9, dtype=np.int64)
    job.emit(ReleaseShares(share, share, b"n" * 16))
    assert phase(next(stream)) is Phase.RELEASED
    assert world.events()[-1] == AuditEvent.RELEASE_RECORDED  # before the job ends
    job.emit(Failed(Code.LOST, "hospital_b", "hospital_a lost the connection to hospital_b"))
    job.exit()
    assert [failure(e)[1] for e in stream] == [Code.LOST]
    assert world.events().count(AuditEvent.RELEASE_RECORDED) == 1
    assert world.events()[-1] == AuditEvent.JOB_ABORTED


def test_a_job_process_that_ends_unannounced_is_an_internal_failure(world: World) -> None:
    stream, job = accepted(world)
    job.emit(Progress(Phase.LOCAL_TABLE, "9 cells"))
    job.exit()  # no Done, no Failed: it crashed
    events = list(stream)
    assert phase(events[0]) is Phase.LOCAL_TABLE
    assert [failure(e) for e in events[1:]] == \
        [(PARTY, Code.INTERNAL, "the job process ended unexpectedly")]
    assert [(e["code"], e["reason"]) for e in world.entries()
            if e["event"] == AuditEvent.JOB_ABORTED] == \
        [(Code.ABORTED, "the job process ended unexpectedly")]
    assert not world.service.jobs


def test_the_time_limit_yields_a_timeout_and_kills_the_job(make_world: Callable[..., World]
                                                           ) -> None:
    world = make_world(job_timeout_s=0.6, stubborn=True)  # a job that ignores the abort
    stream, job = accepted(world)
    started = time.monotonic()
    events = list(stream)
    assert 0.5 < time.monotonic() - started < 3
    assert [failure(e) for e in events] == \
        [(PARTY, Code.TIMEOUT, "the job exceeded the worker's time limit of 1 s "
                               "(job_timeout_s in party.toml; `mpc demo --job-timeout`)")]
    assert job.orders() == [AbortOrder("time limit of 1 s exceeded")]
    assert job.killed and job.joins == [2.0, 5]
    assert [(e["code"], e["reason"]) for e in world.entries()
            if e["event"] == AuditEvent.JOB_ABORTED] == \
        [(Code.ABORTED, "time limit of 1 s exceeded")]
    assert not world.service.jobs


# ---- refusals before any process starts ---------------------------------------------------

@pytest.mark.parametrize(("spec", "caller", "reason"), [
    (spec_text("other-use", PARTIES), COORDINATOR,
     "use case 'other-use' is not allowed by its policy"),
    (SPEC, OTHER, "coordinator 'other-coord' is not allowed by its policy"),
    (spec_text("product-use", ("hospital_b", "hospital_c")), COORDINATOR,
     "it is not one of the use case's parties (hospital_b, hospital_c)"),
])
def test_a_spec_the_policy_refuses_never_starts_a_process(world: World, spec: bytes,
                                                          caller: str, reason: str) -> None:
    events = list(world.submit(spec=spec, caller=caller))
    assert [failure(e) for e in events] == \
        [(PARTY, Code.POLICY, f"{PARTY} refused the job: {reason}")]
    assert world.jobs == [] and not world.service.jobs
    received, decision = world.entries()
    assert (received["event"], received["coordinator"]) == (AuditEvent.JOB_RECEIVED, caller)
    assert (decision["event"], decision["approved"], decision["reason"]) == \
        (AuditEvent.POLICY_DECISION, False, reason)
    assert decision["spec_sha256"] == hashlib.sha256(spec).hexdigest()


def test_a_replayed_job_id_is_refused_and_audited_even_after_a_restart(world: World) -> None:
    finished(world)
    assert len(world.jobs) == 1
    again = spec_text("product-use", PARTIES, group_by=("product", "line"), min_cell=20)
    replay = f"{PARTY} refused the job: job id {JOB} was used before; a job id is used once"
    for service in (world.service, world.restart()):  # the new one reads the log
        events = list(world.submit(spec=again, service=service))
        assert [failure(e) for e in events] == [(PARTY, Code.POLICY, replay)]
    assert len(world.jobs) == 1  # neither replay started a process
    refusals = [e for e in world.entries() if e["event"] == AuditEvent.JOB_REPLAY_REFUSED]
    assert len(refusals) == 2
    assert {(e["coordinator"], e["code"], e["spec_sha256"]) for e in refusals} == \
        {(COORDINATOR, Code.POLICY, hashlib.sha256(again).hexdigest())}
    assert refusals[0]["reason"] == f"job id {JOB} was used before; a job id is used once"
    assert world.events().count(AuditEvent.JOB_RECEIVED) == 1


def test_a_job_id_refused_by_policy_is_used_up_too(world: World) -> None:
    list(world.submit(spec=spec_text("other-use", PARTIES)))
    events = list(world.submit())
    assert failure(events[0])[1] is Code.POLICY and "was used before" in failure(events[0])[2]
    assert world.jobs == []


def test_an_abort_that_overtakes_the_submission_refuses_it(world: World) -> None:
    assert world.abort(reason="hospital_b refused") == worker_pb2.AbortReply()
    events = list(world.submit())
    assert [failure(e) for e in events] == [(PARTY, Code.ABORTED, "the job was already aborted")]
    assert world.jobs == [] and not world.service.jobs
    assert world.events() == [AuditEvent.JOB_RECEIVED, AuditEvent.POLICY_DECISION,
                              AuditEvent.JOB_ABORTED]
    assert world.entries()[-1]["code"] == Code.ABORTED
    # another job is not affected
    stream, _ = accepted(world, job_id="job-0000000000000002")
    stream.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("job_id", "caller", "code"), [
    ("short", COORDINATOR, grpc.StatusCode.INVALID_ARGUMENT),
    ("job id with spaces", COORDINATOR, grpc.StatusCode.INVALID_ARGUMENT),
    (JOB, "hospital_b", grpc.StatusCode.PERMISSION_DENIED),  # a party's certificate
])
def test_a_malformed_submission_is_refused_before_anything_is_audited(
        world: World, job_id: str, caller: str, code: grpc.StatusCode) -> None:
    with pytest.raises(Aborted) as err:
        next(world.submit(job_id=job_id, caller=caller))
    assert err.value.code == code
    assert list(iter_entries(world.config.audit_log)) == [] and world.jobs == []


def test_a_worker_at_its_job_limit_refuses_more(make_world: Callable[..., World]) -> None:
    world = make_world(limits={"max_concurrent_jobs": 1})
    accepted(world)
    with pytest.raises(Aborted) as err:
        next(world.submit(job_id="job-0000000000000002"))
    assert err.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "runs 1 jobs already" in err.value.details
    assert len(world.jobs) == 1 and world.events("job-0000000000000002") == []


# ---- aborts and a coordinator that goes away ----------------------------------------------

def test_the_coordinators_abort_ends_the_job_and_is_audited(world: World) -> None:
    stream, job = accepted(world)
    world.abort(reason="the job failed at another party", caller=OTHER)  # not its coordinator
    assert job.orders() == [] and world.service.jobs[JOB].abort_reason is None
    world.abort(reason="the job failed at another party")
    assert job.orders() == [AbortOrder("the job failed at another party")]
    assert list(stream) == []  # the relay ends without a word: the coordinator knows
    assert not job.alive and not job.killed  # it ended on the order
    assert {type(o) for o in job.orders()} == {AbortOrder}
    assert [(e["code"], e["reason"]) for e in world.entries()
            if e["event"] == AuditEvent.JOB_ABORTED] == \
        [(Code.ABORTED, "the job failed at another party")]
    assert not world.service.jobs


def test_an_abort_without_reason_says_who_aborted(world: World) -> None:
    stream, job = accepted(world)
    world.abort()
    assert job.orders() == [AbortOrder("aborted by the coordinator")]
    list(stream)
    assert world.entries()[-1]["reason"] == "aborted by the coordinator"


def test_an_abort_with_a_malformed_job_id_is_refused(world: World) -> None:
    with pytest.raises(Aborted) as err:
        world.abort(job_id="x")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_coordinator_that_goes_away_while_events_flow_aborts_the_job(world: World) -> None:
    context = world.context()
    stream, job = accepted(world, context=context)
    context.active = False
    assert list(stream) == []
    assert job.orders() == [AbortOrder("the coordinator went away")] and not job.alive
    assert world.entries()[-1]["event"] == AuditEvent.JOB_ABORTED
    assert world.entries()[-1]["reason"] == "the coordinator went away"


def test_a_coordinator_that_hangs_up_between_events_aborts_the_job(world: World) -> None:
    """gRPC does not resume the generator of a stream whose client vanished: the stream's
    callback ends the job."""
    context = world.context()
    stream, job = accepted(world, context=context)
    context.end()
    wait_for(lambda: not world.service.jobs)
    assert job.orders() == [AbortOrder("the coordinator went away")] and not job.alive
    stream.close()  # type: ignore[attr-defined]  # what gRPC does to it eventually
    assert [e["reason"] for e in world.entries() if e["event"] == AuditEvent.JOB_ABORTED] == \
        ["the coordinator went away"]


def test_the_end_of_a_finished_stream_aborts_nothing(world: World) -> None:
    context = world.context()
    stream, job = accepted(world, context=context)
    job.emit(Done(1, Head(PARTY, 3, "d" * 64, "e" * 86 + "==")))
    job.exit()
    assert [phase(e) for e in stream] == [Phase.DONE]
    context.end()
    time.sleep(0.05)  # the callback's thread, if it did anything
    assert AuditEvent.JOB_ABORTED not in world.events() and job.orders() == []


# ---- a worker that stops (SIGTERM) --------------------------------------------------------

def test_a_stopping_worker_aborts_its_jobs_tells_the_coordinator_and_takes_no_more(
        world: World) -> None:
    stream, job = accepted(world)
    started = time.monotonic()
    world.service.stop()
    assert time.monotonic() - started < 1  # the job ended on the order, no grace waited
    assert job.orders() == [AbortOrder("the worker is shutting down")]
    assert not job.alive and not job.killed
    assert [failure(e) for e in stream] == \
        [(PARTY, Code.WORKER, "the worker is shutting down")]
    assert [(e["code"], e["reason"]) for e in world.entries()
            if e["event"] == AuditEvent.JOB_ABORTED] == \
        [(Code.ABORTED, "the worker is shutting down")]
    assert not world.service.jobs
    with pytest.raises(Aborted) as err:
        next(world.submit(job_id="job-0000000000000002"))
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.details == f"{PARTY}: the worker is shutting down"
    assert len(world.jobs) == 1


def test_a_stopping_worker_kills_a_job_that_ignores_the_order(
        make_world: Callable[..., World]) -> None:
    world = make_world(stubborn=True)
    stream, job = accepted(world)
    world.service.stop()
    assert job.killed and not job.alive  # within the grace, then SIGKILL
    assert [failure(e)[1] for e in stream] == [Code.WORKER]
    assert not world.service.jobs


# ---- Start --------------------------------------------------------------------------------

@pytest.mark.parametrize(("peers", "dealer_address", "rules", "problem"), [
    ({0: ENDPOINTS[0], 1: ENDPOINTS[1]}, DEALER, None,
     "the order names ranks [0, 1], expected 0 to 2"),
    ({**ENDPOINTS, 3: "127.0.0.1:9103"}, DEALER, None,
     "the order names ranks [0, 1, 2, 3], expected 0 to 2"),
    ({**ENDPOINTS, 1: "no-port"}, DEALER, None,
     "malformed address 'no-port' (expected host:port)"),
    (ENDPOINTS, "127.0.0.1:99999", None,
     "malformed address '127.0.0.1:99999' (expected host:port)"),
    (ENDPOINTS, DEALER, DisclosureRules(min_cell=15, min_contributors=4),
     "disclosure rules out of range (min_cell 15, min_contributors 4)"),
    (ENDPOINTS, DEALER, DisclosureRules(min_cell=0, min_contributors=2),
     "disclosure rules out of range (min_cell 0, min_contributors 2)"),
])
def test_a_malformed_start_order_is_refused(world: World, peers: dict[int, str],
                                            dealer_address: str,
                                            rules: DisclosureRules | None,
                                            problem: str) -> None:
    accepted(world)
    with pytest.raises(Aborted) as err:
        world.start(peers=peers, dealer=dealer_address, rules=rules)
    assert (err.value.code, err.value.details) == (grpc.StatusCode.INVALID_ARGUMENT, problem)
    assert world.jobs[0].orders() == []
    assert AuditEvent.JOB_START not in world.events()


@pytest.mark.parametrize(("job_id", "caller"), [("job-0000000000000009", COORDINATOR),
                                                (JOB, OTHER)])
def test_a_start_for_no_job_of_the_caller_is_not_found(world: World, job_id: str,
                                                       caller: str) -> None:
    accepted(world)
    with pytest.raises(Aborted) as err:
        world.start(job_id=job_id, caller=caller)
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert err.value.details == f"no job {job_id!r} from {caller}"
    assert world.jobs[0].orders() == []


def test_a_start_for_a_job_whose_process_ended_fails(world: World) -> None:
    _, job = accepted(world)
    job.exit()
    with pytest.raises(Aborted) as err:
        world.start()
    assert (err.value.code, err.value.details) == \
        (grpc.StatusCode.FAILED_PRECONDITION, "the job process has ended")


# ---- Seal ---------------------------------------------------------------------------------

def test_seal_pins_the_coordinators_head_once(world: World, tmp_path: Path) -> None:
    finished(world)
    head = coordinator_head(tmp_path)
    with pytest.raises(Aborted) as err:  # another coordinator cannot seal this job
        world.seal(coordinator_head(tmp_path, OTHER), caller=OTHER)
    assert (err.value.code, err.value.details) == \
        (grpc.StatusCode.NOT_FOUND, f"no finished job {JOB} from {OTHER} to seal")
    assert world.seal(head) == worker_pb2.SealReply()
    pins = [e for e in world.entries() if e["event"] == AuditEvent.MEMBER_HEAD]
    assert [(e["member_role"], e["head"]) for e in pins] == [(COORDINATOR_ROLE, head.as_dict())]
    with pytest.raises(Aborted) as err:
        world.seal(head)
    assert (err.value.code, err.value.details) == \
        (grpc.StatusCode.NOT_FOUND, f"no finished job {JOB} from {COORDINATOR} to seal")
    assert world.events().count(AuditEvent.MEMBER_HEAD) == 1


def test_seal_refuses_the_head_of_another_member(world: World, tmp_path: Path) -> None:
    finished(world)
    with pytest.raises(Aborted) as err:
        world.seal(coordinator_head(tmp_path, OTHER))
    assert (err.value.code, err.value.details) == \
        (grpc.StatusCode.INVALID_ARGUMENT, f"{COORDINATOR} sent the log head of {OTHER!r}")
    assert AuditEvent.MEMBER_HEAD not in world.events()
    world.seal(coordinator_head(tmp_path))  # the job is still sealable by its own head
    assert world.events().count(AuditEvent.MEMBER_HEAD) == 1


@pytest.mark.parametrize(("head", "problem"), [
    (None, "no log head"),
    (Head(COORDINATOR, 1, "a" * 64, "not a signature"), "malformed log head signature"),
    (Head(COORDINATOR, 1, "A" * 64, "s" * 86 + "=="),
     "malformed log head hash (64 lower-case hex digits)"),
])
def test_seal_refuses_a_malformed_head(world: World, head: Head | None, problem: str) -> None:
    finished(world)
    with pytest.raises(Aborted) as err:
        world.seal(head)
    assert (err.value.code, err.value.details) == (grpc.StatusCode.INVALID_ARGUMENT, problem)
    assert AuditEvent.MEMBER_HEAD not in world.events()


def test_a_job_that_did_not_finish_cannot_be_sealed(world: World, tmp_path: Path) -> None:
    stream, job = accepted(world)
    job.emit(Failed(Code.DATA, PARTY, "hospital_a: dataset 'treatments': no such file"))
    job.exit()
    list(stream)
    with pytest.raises(Aborted) as err:
        world.seal(coordinator_head(tmp_path))
    assert err.value.code == grpc.StatusCode.NOT_FOUND
    assert AuditEvent.MEMBER_HEAD not in world.events()
