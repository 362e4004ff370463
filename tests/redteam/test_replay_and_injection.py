"""A job id is used once, against real workers and a real dealer, across restarts; and
names and ids from the network are checked strictly before anything is logged with them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from mpc.audit.events import JOB_RECEIVED, JOB_REPLAY_REFUSED, JOIN_REFUSED, MEMBER_HEAD
from mpc.audit.log import AuditLog
from mpc.config.party import TlsFiles
from mpc.config.spec import parse_spec
from mpc.engine.dealer_client import DealerClient
from mpc.errors import Code, DealerError, JobFailed
from mpc.proto import worker_pb2, worker_pb2_grpc
from mpc.runner.coordinator import Coordinator
from mpc.synth import generate_treatments
from mpc.transport.tls import TlsIdentity, secure_channel
from tests.conftest import Harness, start_federation
from tests.helpers import spec_text

PARTIES = ["hospital_a", "hospital_b"]
SPEC = spec_text("product-use", PARTIES)
INJECTED = 'hospital_b"release_recorded'


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("replay")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=200, seed=37)
    fed = start_federation(root / "fed", files, ["product-use"])
    try:
        yield Harness(fed, files)
    finally:
        fed.stop()


def run(harness: Harness, job_id: str | None = None, spec: bytes = SPEC) -> Any:
    coordinator = Coordinator(harness.federation, harness.identity, timeout_s=180,
                              audit=harness.audit)
    return coordinator.run(parse_spec(spec), job_id=job_id)


@pytest.fixture(scope="module")
def finished(harness: Harness) -> str:
    """The id of a job that ran to its end."""
    outcome = run(harness, "replayed-job-0001")
    assert outcome.table is not None
    return outcome.job_id


def submit(harness: Harness, party: str, job_id: str, spec: bytes = SPEC) -> list[Any]:
    """Submit straight to one worker, as a coordinator: the events it streams back."""
    with secure_channel(harness.identity, harness.fed.addresses[party], party) as channel:
        return list(worker_pb2_grpc.WorkerStub(channel).Submit(
            worker_pb2.SubmitRequest(job_id=job_id, spec_toml=spec), timeout=30))


def party(harness: Harness, name: str) -> TlsIdentity:
    certs = harness.fed.certs
    return TlsIdentity.load(TlsFiles(certs / "ca.pem", certs / f"{name}.pem",
                                     certs / f"{name}.key"))


def dealer_client(harness: Harness, name: str, job_id: str) -> DealerClient:
    return DealerClient(party(harness, name), harness.fed.dealer_address, "dealer", job_id,
                        retries=0)


def events_of(harness: Harness, member: str, job_id: str, event: str) -> list[dict[str, Any]]:
    return [e for e in harness.audit_events(member, job_id) if e["event"] == event]


def assert_replay_refused(harness: Harness, job_id: str, replays: int) -> None:
    for name in PARTIES:
        events = submit(harness, name, job_id)
        assert [e.phase for e in events] == [worker_pb2.JobEvent.FAILED]  # not even ACCEPTED
        failure = events[0].failure
        assert (failure.party, failure.code) == (name, Code.POLICY)
        assert failure.message == (f"{name} refused the job: job id {job_id} was used "
                                   "before; a job id is used once")
        # audited, and no job process: the job was received (and started) once
        assert len(events_of(harness, name, job_id, JOB_REPLAY_REFUSED)) == replays
        assert len(events_of(harness, name, job_id, JOB_RECEIVED)) == 1
        assert len(events_of(harness, name, job_id, "session_start")) == 1
        log = (harness.fed.service_logs / f"{name}.log").read_text()
        assert log.count(f"job {job_id} (product-use) accepted") == 1


def test_a_job_id_is_used_once_even_after_a_worker_restart(harness: Harness,
                                                           finished: str) -> None:
    assert_replay_refused(harness, finished, replays=1)
    with pytest.raises(JobFailed) as failed:  # the coordinator sees a clear refusal too
        run(harness, finished)
    assert failed.value.party in PARTIES
    assert f"job id {finished} was used before; a job id is used once" in failed.value.cause
    harness.fed.kill("hospital_a")
    harness.fed.start_worker("hospital_a")
    assert_replay_refused(harness, finished, replays=3)
    assert run(harness).table is not None  # a fresh id runs


def test_a_refused_job_id_is_not_taken_again_either(harness: Harness) -> None:
    """A job refused by policy was still received: its id is spent."""
    refused = spec_text("not-allowed", PARTIES)
    events = submit(harness, "hospital_b", "refused-job-0001", refused)
    assert events[-1].failure.code == Code.POLICY and "not allowed" in events[-1].failure.message
    events = submit(harness, "hospital_b", "refused-job-0001")
    assert "was used before" in events[-1].failure.message


def test_the_dealer_serves_a_job_id_once_even_after_a_restart(harness: Harness,
                                                              finished: str) -> None:
    spec_sha256 = parse_spec(SPEC).sha256
    with pytest.raises(DealerError, match="FAILED_PRECONDITION.*was served before"):
        dealer_client(harness, "hospital_a", finished).join(spec_sha256, PARTIES, 0)
    fresh = "fresh-dealer-job-01"
    assert len(dealer_client(harness, "hospital_a", fresh).join(spec_sha256, PARTIES, 0)) == 32
    with pytest.raises(DealerError, match="joined job fresh-dealer-job-01 already: each "
                                          "party joins a job once"):
        dealer_client(harness, "hospital_a", fresh).join(spec_sha256, PARTIES, 0)
    harness.fed.kill("dealer")
    harness.fed.start_services(["dealer"])
    for job_id, name, rank in ((finished, "hospital_a", 0), (finished, "hospital_b", 1),
                               (fresh, "hospital_a", 0), (fresh, "hospital_b", 1)):
        with pytest.raises(DealerError, match="was served before: a job id is used once"):
            dealer_client(harness, name, job_id).join(spec_sha256, PARTIES, rank)
    assert len(events_of(harness, "dealer", fresh, JOIN_REFUSED)) == 3
    outcome = run(harness)  # the restarted dealer serves new jobs
    assert outcome.table is not None
    for name in PARTIES:  # ...and its log head is pinned at every party
        pins = events_of(harness, name, outcome.job_id, MEMBER_HEAD)
        assert sorted(e["member_role"] for e in pins) == ["coordinator", "dealer"]


@pytest.mark.parametrize("bad", ['hospital_b\\"release_recorded', "hospital_b\\n", "h" * 200])
def test_a_spec_naming_a_malformed_party_is_refused(harness: Harness, bad: str) -> None:
    events = submit(harness, "hospital_a", f"bad-name-{len(bad):04d}",
                    spec_text("product-use", ["hospital_a", bad]))
    assert [e.phase for e in events] == [worker_pb2.JobEvent.FAILED]
    assert events[0].failure.code == Code.POLICY
    assert "malformed name" in events[0].failure.message


def test_a_job_id_with_a_trailing_newline_is_refused(harness: Harness) -> None:
    with pytest.raises(grpc.RpcError) as err:
        submit(harness, "hospital_a", "trailing-newline-1\n")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed job id" in err.value.details()
    assert not [e for e in harness.audit_events_of("hospital_a")
                if e.get("job", "").startswith("trailing-newline")]


def test_a_worker_restarts_over_entries_that_hold_injected_text(harness: Harness) -> None:
    """Text that looks like another event inside an entry's field, and a line that is no
    entry at all: the worker reads its log as entries and starts."""
    harness.fed.kill("hospital_b")
    path = harness.fed.logs / "hospital_b.jsonl"
    log = AuditLog.open(path, harness.fed.certs / "hospital_b.sign.key", "hospital_b", "party")
    log.append("note", job="injected-0001", parties=["hospital_a", INJECTED],
               reason='"release_recorded" "job_received"')
    with path.open("ab") as fh:
        fh.write(b'{"event": "release_recorded", "job": "torn')  # a crash mid-write
    harness.fed.start_worker("hospital_b")  # listening: it started over the torn line
    harness.fed.kill("hospital_b")
    harness.fed.start_worker("hospital_b")  # and over it once ended as a line of its own
    text = (harness.fed.service_logs / "hospital_b.log").read_text()
    assert "is not an audit entry; skipped" in text
    assert run(harness).table is not None

