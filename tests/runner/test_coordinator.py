"""The coordinator on its own: Coordinator.run against fake worker stubs (the module's
`secure_channel` and `worker_pb2_grpc` replaced), whose Submit streams the test scripts as
workers would send them. No processes, no network, no TLS. Checked: the rules it orders,
how a failure anywhere ends the job everywhere and whom it blames, the table it rebuilds
from the parties' shares, its time limit, the phases it reports, and its audit log."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.digests import message_digest
from mpc.audit.events import AuditEvent
from mpc.audit.log import AuditLog, iter_entries
from mpc.config.federation import CoordinatorSecrets, Federation, Member
from mpc.config.rules import DisclosureRules
from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.errors import Code, JobFailed
from mpc.phases import Phase
from mpc.proto import common_pb2, worker_pb2
from mpc.runner import coordinator as coordinator_module
from mpc.runner.coordinator import Coordinator, JobOutcome
from mpc.transport.messages import (
    failure_to_proto,
    rules_from_proto,
    rules_to_proto,
    tensor_to_proto,
)
from mpc.transport.tls import TlsIdentity
from tests.helpers import spec_text

PARTIES = ("hospital_a", "hospital_b", "hospital_c")
JOB = "job-0000000000000001"
DEALER = "127.0.0.1:9200"
ENDPOINTS = {"hospital_a": "127.0.0.1:9100", "hospital_b": "127.0.0.1:9101",
             "hospital_c": "127.0.0.1:9102"}
# Every party's floors, each stricter than the spec (min_cell 10) in one rule.
FLOORS = {"hospital_a": DisclosureRules(min_cell=12),
          "hospital_b": DisclosureRules(min_cell=1, min_contributors=2),
          "hospital_c": DisclosureRules(min_cell=1, suppress_zero=True)}
APPLIED = DisclosureRules(min_cell=12, suppress_zero=True, min_contributors=2)
# The true table (product x line, 9 cells) and what the rules release of it.
TABLE = np.array([0, 3, 12, 30, 15, 9, 40, 1, 22], dtype=np.int64)
KEEP = (TABLE >= APPLIED.min_cell) & (TABLE != 0)  # noqa: SIM300
SIG = "s" * 86 + "=="
ABORT_REASON = "the job failed at another party"


# ---- fake workers -------------------------------------------------------------------------

_END = object()


@dataclass(frozen=True)
class Pause:
    """A pause in a scripted stream (so one party's event comes after another's)."""

    seconds: float


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class Call:
    """A Submit call: iterating it gives the worker's stream; cancel ends it."""

    def __init__(self, worker: FakeWorker) -> None:
        self.worker = worker

    def __iter__(self) -> Iterator[worker_pb2.JobEvent]:
        while True:
            item = self.worker.stream.get()
            if item is _END:
                return
            if isinstance(item, Pause):
                time.sleep(item.seconds)
            elif isinstance(item, grpc.RpcError):
                raise item
            else:
                yield item

    def cancel(self) -> None:
        self.worker.cancelled = True
        self.worker.stream.put(_END)


class FakeWorker:
    """One party's worker stub: what it streams before the start order (`before`) and after
    it (`after`), and every request it got."""

    def __init__(self, name: str, before: Sequence[Any], after: Sequence[Any]) -> None:
        self.name = name
        self.after = list(after)
        self.stream: queue.Queue[Any] = queue.Queue()
        for item in before:
            self.stream.put(item)
        self.submits: list[tuple[worker_pb2.SubmitRequest, float]] = []
        self.starts: list[worker_pb2.StartRequest] = []
        self.aborts: list[worker_pb2.AbortRequest] = []
        self.seals: list[worker_pb2.SealRequest] = []
        self.start_error: grpc.RpcError | None = None
        self.abort_error: grpc.RpcError | None = None
        # Set: each Abort waits there for the others, and notes whether they all came.
        self.abort_barrier: threading.Barrier | None = None
        self.aborted_with_the_others: bool | None = None
        self.cancelled = False

    def Submit(self, request: worker_pb2.SubmitRequest, timeout: float) -> Call:  # noqa: N802
        self.submits.append((request, timeout))
        return Call(self)

    def Start(self, request: worker_pb2.StartRequest, timeout: float  # noqa: N802
              ) -> worker_pb2.StartReply:
        self.starts.append(request)
        if self.start_error is not None:
            raise self.start_error
        for item in self.after:
            self.stream.put(item)
        return worker_pb2.StartReply()

    def Abort(self, request: worker_pb2.AbortRequest, timeout: float  # noqa: N802
              ) -> worker_pb2.AbortReply:
        self.aborts.append(request)
        if self.abort_barrier is not None:
            try:
                self.abort_barrier.wait()
                self.aborted_with_the_others = True
            except threading.BrokenBarrierError:
                self.aborted_with_the_others = False
        if self.abort_error is not None:
            raise self.abort_error
        return worker_pb2.AbortReply()

    def Seal(self, request: worker_pb2.SealRequest, timeout: float  # noqa: N802
             ) -> worker_pb2.SealReply:
        self.seals.append(request)
        return worker_pb2.SealReply()


class FakeChannel:
    def __init__(self, name: str, address: str) -> None:
        self.name, self.address = name, address
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> FakeChannel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---- the events workers send --------------------------------------------------------------

def event(party: str, phase: Phase, **fields: Any) -> worker_pb2.JobEvent:
    return worker_pb2.JobEvent(job_id=JOB, party=party, phase=phase.to_proto(), **fields)


def ready(party: str) -> worker_pb2.JobEvent:
    return event(party, Phase.READY, endpoint=ENDPOINTS[party],
                 floors=rules_to_proto(FLOORS[party]))


def released(party: str, keep: torch.Tensor, value: torch.Tensor) -> worker_pb2.JobEvent:
    return event(party, Phase.RELEASED, release=worker_pb2.Release(
        keep=tensor_to_proto(keep), value=tensor_to_proto(value), nonce=nonce(party)))


def head(member: str, seq: int = 7) -> common_pb2.AuditHead:
    return common_pb2.AuditHead(member=member, seq=seq, hash=f"{seq:064x}", sig=SIG)


def done(party: str, head_of: str | None = None) -> worker_pb2.JobEvent:
    return event(party, Phase.DONE, head=head(head_of or party, PARTIES.index(party) + 3))


def failed(party: str, origin: str, code: Code, message: str) -> worker_pb2.JobEvent:
    return event(party, Phase.FAILED, failure=failure_to_proto(origin, code, message))


def nonce(party: str) -> bytes:
    return f"nonce of {party}".encode().ljust(16, b".")


def shares(values: np.ndarray, parties: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """Random int64 shares that add up (mod 2^64) to `values`."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = -(2**63), 2**63 - 1
    parts = [torch.randint(lo, hi, (len(values),), dtype=torch.int64, generator=gen)
             for _ in range(parties - 1)]
    last = torch.from_numpy(values.astype(np.int64)).clone()
    for part in parts:
        last -= part  # wraps, as the parties' arithmetic does
    return [*parts, last]


KEEP_SHARES = shares(KEEP.astype(np.int64), seed=1)
VALUE_SHARES = shares(np.where(KEEP, TABLE, 0), seed=2)


def before(party: str) -> list[Any]:
    return [event(party, Phase.ACCEPTED), event(party, Phase.LOCAL_TABLE, detail="9 cells"),
            ready(party)]


def after(party: str) -> list[Any]:
    rank = PARTIES.index(party)
    return [event(party, Phase.CONNECTED), event(party, Phase.COMPUTING, detail="blinding"),
            released(party, KEEP_SHARES[rank], VALUE_SHARES[rank]), done(party), _END]


# ---- the coordinator under test -----------------------------------------------------------

class Harness:
    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workers: dict[str, FakeWorker] = {p: FakeWorker(p, before(p), after(p))
                                               for p in PARTIES}
        self.channels: list[FakeChannel] = []
        self.progress: list[tuple[str, Phase, str]] = []
        self.audit = AuditLog(root / "coordinator.jsonl", Ed25519PrivateKey.generate(),
                              "coordinator", "coordinator")
        self.federation = Federation(
            ca=root / "ca.pem", coordinator=Member("coordinator", "coordinator", None),
            own=CoordinatorSecrets(None, None, None),
            dealer=Member("dealer", "dealer", DEALER),
            parties={p: Member(p, "party", f"127.0.0.1:{7001 + i}")
                     for i, p in enumerate(PARTIES)})
        self.identity = TlsIdentity("coordinator", "coordinator", b"", b"", b"", "f" * 64)
        monkeypatch.setattr(coordinator_module, "secure_channel", self._channel)
        monkeypatch.setattr(coordinator_module, "worker_pb2_grpc",
                            SimpleNamespace(WorkerStub=lambda channel:
                                            self.workers[channel.name]))

    def _channel(self, identity: TlsIdentity, address: str, name: str) -> FakeChannel:
        assert identity is self.identity
        assert address == self.federation.parties[name].address
        self.channels.append(FakeChannel(name, address))
        return self.channels[-1]

    def coordinator(self, timeout_s: float = 20.0, audit: bool = True) -> Coordinator:
        return Coordinator(self.federation, self.identity,
                           lambda party, phase, detail: self.progress.append(
                               (party, phase, detail)),
                           timeout_s=timeout_s, audit=self.audit if audit else None)

    def run(self, spec: UseCaseSpec | None = None, **options: Any) -> JobOutcome:
        return self.coordinator(**options).run(spec or SPEC, job_id=JOB)

    def fails(self, spec: UseCaseSpec | None = None, **options: Any) -> JobFailed:
        with pytest.raises(JobFailed) as err:
            self.run(spec, **options)
        assert err.value.job_id == JOB
        return err.value

    def entries(self) -> list[dict[str, Any]]:
        return [e for e in iter_entries(self.audit.path) if e.get("job") == JOB]

    def events(self) -> list[str]:
        return [e["event"] for e in self.entries()]

    def entry(self, name: AuditEvent) -> dict[str, Any]:
        [found] = [e for e in self.entries() if e["event"] == name]
        return found

    def assert_aborted_everywhere(self, party: str | None, cause: str) -> None:
        for worker in self.workers.values():
            assert [(a.job_id, a.reason) for a in worker.aborts] == [(JOB, ABORT_REASON)]
            assert worker.cancelled and worker.seals == []
        assert all(c.closed for c in self.channels)
        assert self.events()[-1] == AuditEvent.JOB_ABORTED
        aborted = self.entry(AuditEvent.JOB_ABORTED)
        assert (aborted["party"], aborted["reason"]) == (party, cause)
        assert not {AuditEvent.RESULT, AuditEvent.JOB_END} & set(self.events())


SPEC = parse_spec(spec_text("product-use", PARTIES, group_by=("product", "line")))


@pytest.fixture()
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    return Harness(tmp_path, monkeypatch)


# ---- a job that succeeds ------------------------------------------------------------------

def test_a_job_is_started_under_the_strictest_rules_and_its_table_rebuilt(
        stubs: Harness) -> None:
    outcome = stubs.run()
    for worker in stubs.workers.values():
        [(submit, timeout)] = worker.submits
        assert (submit.job_id, submit.spec_toml, timeout) == (JOB, SPEC.text, 20.0)
        [start] = worker.starts
        assert start.job_id == JOB and start.dealer_address == DEALER
        assert dict(start.peers) == {i: ENDPOINTS[p] for i, p in enumerate(PARTIES)}
        assert rules_from_proto(start.disclosure) == APPLIED
        assert worker.aborts == [] and worker.cancelled
    assert outcome.rules == APPLIED and outcome.job_id == JOB
    assert outcome.phases == dict.fromkeys(PARTIES, Phase.DONE)
    table = outcome.table
    assert table is not None and table.rules == APPLIED
    assert table.keep.tolist() == KEEP.tolist()
    assert table.value.tolist() == np.where(KEEP, TABLE, 0).tolist()
    assert all(c.closed for c in stubs.channels)


def test_the_progress_callback_sees_every_partys_phases(stubs: Harness) -> None:
    stubs.run()
    for party in PARTIES:
        assert [(phase, detail) for p, phase, detail in stubs.progress if p == party] == [
            (Phase.SUBMITTED, ""), (Phase.ACCEPTED, ""), (Phase.LOCAL_TABLE, "9 cells"),
            (Phase.READY, ""), (Phase.CONNECTED, ""), (Phase.COMPUTING, "blinding"),
            (Phase.RELEASED, ""), (Phase.DONE, "")]


def test_the_job_is_audited_from_submission_to_seal(stubs: Harness) -> None:
    outcome = stubs.run()
    assert stubs.events() == [AuditEvent.JOB_SUBMITTED, AuditEvent.JOB_START,
                                *[AuditEvent.RELEASE_RECEIVED] * 3, AuditEvent.RESULT,
                                AuditEvent.PARTY_HEADS, AuditEvent.JOB_END]
    submitted = stubs.entry(AuditEvent.JOB_SUBMITTED)
    assert (submitted["usecase"], submitted["spec_sha256"], submitted["parties"],
            submitted["recipients"], submitted["spec"]) == \
        ("product-use", SPEC.sha256, list(PARTIES), ["coordinator"], SPEC.text.decode())
    assert stubs.entry(AuditEvent.JOB_START)["rules"] == asdict(APPLIED)
    received = [e for e in stubs.entries() if e["event"] == AuditEvent.RELEASE_RECEIVED]
    for rank, (party, entry) in enumerate(zip(PARTIES, received, strict=True)):
        assert entry["party"] == party
        assert entry["digests"] == {
            name: message_digest(JOB, party, "coordinator", seq, nonce(party),
                                 t.numpy().astype("<i8").tobytes())
            for seq, (name, t) in enumerate([("keep", KEEP_SHARES[rank]),
                                             ("value", VALUE_SHARES[rank])])}
    result = stubs.entry(AuditEvent.RESULT)
    assert result["values"] == [int(v) if k else None for k, v in zip(KEEP, TABLE, strict=True)]
    assert result["rules"] == asdict(APPLIED)
    assert outcome.table is not None and result["digest"] == outcome.table.audit_fields()["digest"]
    assert stubs.entry(AuditEvent.PARTY_HEADS)["heads"] == [
        {"member": p, "seq": i + 3, "hash": f"{i + 3:064x}", "sig": SIG}
        for i, p in enumerate(PARTIES)]
    # every party is handed the log head taken after the job's end, once
    end = stubs.entries()[-1]
    for worker in stubs.workers.values():
        assert [(s.job_id, s.head.member, s.head.seq, s.head.hash, s.head.sig)
                for s in worker.seals] == \
            [(JOB, "coordinator", end["seq"], end["hash"], end["sig"])]


def test_a_malformed_head_of_a_party_is_left_out(stubs: Harness) -> None:
    stubs.workers["hospital_c"].after[-2] = done("hospital_c", head_of="hospital_a")
    stubs.run()
    assert [h["member"] for h in stubs.entry(AuditEvent.PARTY_HEADS)["heads"]] == \
        ["hospital_a", "hospital_b"]


def test_without_an_audit_log_nothing_is_sealed(stubs: Harness) -> None:
    outcome = stubs.run(audit=False)
    assert outcome.table is not None
    assert all(w.seals == [] for w in stubs.workers.values())
    assert stubs.entries() == []


def test_a_coordinator_that_is_no_recipient_rebuilds_nothing(stubs: Harness) -> None:
    spec = parse_spec(spec_text("product-use", PARTIES, group_by=("product", "line"),
                                recipients=("hospital_a",)))
    for party in PARTIES:  # the shares go to hospital_a, not to the coordinator
        stubs.workers[party].after = [event(party, Phase.CONNECTED), done(party), _END]
    outcome = stubs.run(spec)
    assert outcome.table is None and outcome.rules == APPLIED
    assert stubs.events() == [AuditEvent.JOB_SUBMITTED, AuditEvent.JOB_START,
                                AuditEvent.PARTY_HEADS, AuditEvent.JOB_END]


# ---- a job that fails ---------------------------------------------------------------------

def test_a_failure_anywhere_aborts_every_party(stubs: Harness) -> None:
    message = "hospital_b: dataset 'treatments': no column 'line'"
    stubs.workers["hospital_b"].after = [event("hospital_b", Phase.CONNECTED),
                                           failed("hospital_b", "hospital_b", Code.DATA,
                                                  message)]
    err = stubs.fails()
    assert (err.party, err.cause) == ("hospital_b", "dataset 'treatments': no column 'line'")
    assert str(err) == message
    stubs.assert_aborted_everywhere("hospital_b", "dataset 'treatments': no column 'line'")
    assert ("hospital_b", Phase.FAILED, message) in stubs.progress


def test_a_refusal_before_the_start_starts_no_party(stubs: Harness) -> None:
    stubs.workers["hospital_c"].stream = queue.Queue()
    stubs.workers["hospital_c"].stream.put(failed(
        "hospital_c", "hospital_c", Code.POLICY,
        "hospital_c refused the job: use case 'product-use' is not allowed by its policy"))
    err = stubs.fails()
    assert err.party == "hospital_c" and err.cause.startswith("hospital_c refused the job")
    assert all(w.starts == [] for w in stubs.workers.values())
    stubs.assert_aborted_everywhere("hospital_c", err.cause)


def test_the_aborts_go_to_every_party_at_once(stubs: Harness) -> None:
    """A refusal returns as it arrives: the coordinator orders every abort before it waits
    for any answer, so workers slow to answer (busy starting a job process) do not add
    their waits up. Each fake Abort answers only once all three are in it."""
    barrier = threading.Barrier(len(PARTIES), timeout=10)
    for worker in stubs.workers.values():
        worker.abort_barrier = barrier
    stubs.workers["hospital_b"].stream = queue.Queue()
    stubs.workers["hospital_b"].stream.put(failed(
        "hospital_b", "hospital_b", Code.POLICY,
        "hospital_b refused the job: use case 'product-use' is not allowed by its policy"))
    err = stubs.fails()
    assert err.party == "hospital_b"
    assert {p: w.aborted_with_the_others for p, w in stubs.workers.items()} == \
        dict.fromkeys(PARTIES, True)
    stubs.assert_aborted_everywhere("hospital_b", err.cause)


@pytest.mark.parametrize("root", ["failure", "rpc"])
def test_an_echo_is_replaced_by_the_root_cause_that_follows(stubs: Harness,
                                                            root: str) -> None:
    """hospital_a reports first that it lost its peer; what went wrong is at hospital_c."""
    stubs.workers["hospital_a"].after = [
        failed("hospital_a", "hospital_a", Code.TRANSPORT, "hospital_a: a channel broke")]
    stubs.workers["hospital_b"].after = [
        Pause(0.1), failed("hospital_b", "hospital_c", Code.PEER,
                           "hospital_c aborted the job: no column 'line'")]
    cause = failed("hospital_c", "hospital_c", Code.DATA, "hospital_c: no column 'line'") \
        if root == "failure" else RpcError(grpc.StatusCode.UNAVAILABLE, "connection reset")
    stubs.workers["hospital_c"].after = [Pause(0.3), cause]
    started = time.monotonic()
    err = stubs.fails()
    assert time.monotonic() - started < 2  # the root cause ends the wait at once
    expected = "no column 'line'" if root == "failure" else \
        "its worker is unreachable or gone (UNAVAILABLE: connection reset)"
    assert (err.party, err.cause) == ("hospital_c", expected)
    stubs.assert_aborted_everywhere("hospital_c", expected)


def test_an_echo_naming_the_party_at_fault_blames_that_party(stubs: Harness) -> None:
    stubs.workers["hospital_a"].after = [
        failed("hospital_a", "hospital_b", Code.LOST, "hospital_a lost the connection to "
                                                     "hospital_b")]
    err = stubs.fails()
    assert (err.party, err.cause) == ("hospital_b", "hospital_a lost the connection to "
                                                    "hospital_b")


def test_a_badly_named_origin_is_blamed_on_the_reporting_party(stubs: Harness) -> None:
    stubs.workers["hospital_a"].after = [
        failed("hospital_a", "Not A Name\n", Code.DATA, "bad")]
    err = stubs.fails()
    assert (err.party, err.cause) == ("hospital_a", "bad")


def test_a_party_that_finishes_without_its_shares_fails_the_job(stubs: Harness) -> None:
    stubs.workers["hospital_b"].after = [done("hospital_b"), _END]
    err = stubs.fails()
    assert (err.party, err.cause) == ("hospital_b", "finished without sending its release "
                                                    "shares")
    stubs.assert_aborted_everywhere("hospital_b", err.cause)


def test_a_start_order_a_worker_refuses_fails_the_job(stubs: Harness) -> None:
    stubs.workers["hospital_b"].start_error = RpcError(grpc.StatusCode.FAILED_PRECONDITION,
                                                         "the job process has ended")
    err = stubs.fails()
    assert (err.party, err.cause) == ("hospital_b",
                                      "could not start the job (the job process has ended)")
    stubs.assert_aborted_everywhere("hospital_b", err.cause)


def test_an_unreachable_worker_is_still_aborted_at_the_others(stubs: Harness) -> None:
    stubs.workers["hospital_a"].abort_error = RpcError(grpc.StatusCode.UNAVAILABLE, "down")
    stubs.workers["hospital_c"].after = [failed("hospital_c", "hospital_c", Code.DEALER,
                                                  "the dealer refused")]
    err = stubs.fails()
    assert err.party == "hospital_c"
    stubs.assert_aborted_everywhere("hospital_c", "the dealer refused")


def test_a_job_that_does_not_finish_in_time_fails_and_is_aborted(stubs: Harness) -> None:
    for party in PARTIES:  # accepted, and then nothing
        stubs.workers[party].stream = queue.Queue()
        stubs.workers[party].stream.put(event(party, Phase.ACCEPTED))
    started = time.monotonic()
    err = stubs.fails(timeout_s=0.3)
    assert 0.25 < time.monotonic() - started < 2
    assert err.party is None and err.cause.startswith("the job did not finish within 0 s")
    assert "mpc run --timeout" in err.cause
    assert all(w.submits[0][1] == 0.3 and w.starts == [] for w in stubs.workers.values())
    stubs.assert_aborted_everywhere(None, err.cause)


def test_a_party_missing_from_the_federation_fails_before_anything(stubs: Harness) -> None:
    spec = parse_spec(spec_text("product-use", (*PARTIES, "hospital_z"),
                                group_by=("product", "line")))
    with pytest.raises(JobFailed) as err:
        stubs.run(spec)
    assert err.value.party is None and "'hospital_z' is not in" in err.value.cause
    assert stubs.entries() == []
    assert all(w.submits == [] for w in stubs.workers.values())

