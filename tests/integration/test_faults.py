"""A job that fails anywhere aborts everywhere, names the party and the cause, releases
nothing, and every worker serves the next job."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mpc.audit.model import Verdict
from mpc.audit.verify import verify
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from tests.conftest import Harness, start_federation
from tests.helpers import spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
BUCKETS = [str(i) for i in range(40_000)]  # a table large enough to kill a job mid-way
BIG = {"bucket": BUCKETS}


def write_buckets(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["bucket"])
        writer.writerows([b] for b in rng.choice(len(BUCKETS), size=20_000).astype(str))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("faults")
    from mpc.synth import generate_treatments

    files = generate_treatments(root / "data", PARTIES, patients_per_party=300, seed=3)
    setups = {}
    for i, party in enumerate(PARTIES):
        datasets = {"treatments": {"path": str(files[party])},
                    "buckets": {"path": str(root / "data" / party / "buckets.csv")}}
        write_buckets(root / "data" / party / "buckets.csv", seed=i)
        if party == "hospital_c":  # a broken export: the 'line' column is missing
            broken = root / "data" / party / "broken.csv"
            with files[party].open() as src, broken.open("w") as dst:
                for row in csv.reader(src):
                    dst.write(",".join(row[:3] + row[4:]) + "\n")
            datasets["broken"] = {"path": str(broken)}
        else:
            datasets["broken"] = {"path": str(files[party])}
        usecases = ["product-use", "big", "broken-use"]
        if party != "hospital_b":
            usecases.append("not-for-b")
        setups[party] = PartySetup(datasets, usecases, job_timeout_s=120)
    fed = start_federation(root / "fed", files, [], setups=setups)
    try:
        yield Harness(fed, files)
    finally:
        fed.stop()


def assert_next_job_succeeds(harness: Harness) -> None:
    outcome = harness.run(spec_text("product-use", PARTIES, min_cell=5))
    assert outcome.table is not None and outcome.table.keep.any()


def test_policy_refusal_names_party_and_reason(harness: Harness) -> None:
    with pytest.raises(JobFailed) as failed:
        harness.run(spec_text("not-for-b", PARTIES))
    assert failed.value.party == "hospital_b"
    assert "use case 'not-for-b' is not allowed by its policy" in failed.value.cause
    harness.assert_aborted_everywhere(failed.value.job_id)
    assert_next_job_succeeds(harness)
    # A refused job is no violation: the logs of every member verify for it.
    report = verify(harness.federation, sorted(harness.fed.logs.glob("*.jsonl")))
    job = next(j for j in report.jobs if j["job"] == failed.value.job_id)
    assert job["status"] == "aborted"
    assert [f for f in report.findings if f.job == failed.value.job_id] == []


def test_missing_column_names_party_dataset_and_column(harness: Harness) -> None:
    with pytest.raises(JobFailed) as failed:
        harness.run(spec_text("broken-use", PARTIES, dataset="broken"))
    assert failed.value.party == "hospital_c"
    assert "dataset 'broken', column 'line'" in failed.value.cause
    assert "not found" in failed.value.cause
    harness.assert_aborted_everywhere(failed.value.job_id)
    assert_next_job_succeeds(harness)


def test_worker_killed_mid_job(harness: Harness) -> None:
    text = spec_text("big", PARTIES, group_by=["bucket"], categories=BIG, dataset="buckets",
                     min_cell=2)
    killed = threading.Event()

    def kill_when_computing(party: str, phase: str, detail: str) -> None:
        if phase == "disclosure" and not killed.is_set():
            killed.set()
            harness.fed.kill("hospital_b")

    with pytest.raises(JobFailed) as failed:
        harness.run(text, progress=kill_when_computing)
    assert killed.is_set(), "the job ended before it could be killed"
    assert failed.value.party == "hospital_b"
    harness.assert_aborted_everywhere(failed.value.job_id, skip=("hospital_b",))
    harness.fed.start_worker("hospital_b")  # restarted, it continues its audit chain
    assert_next_job_succeeds(harness)
    # The restarted worker's log is intact: one chain across the crash and the restart.
    # Its killed job has no end in its log: an incident of an aborted job, not tampering.
    report = verify(harness.federation, sorted(harness.fed.logs.glob("*.jsonl")))
    assert report.findings == [], report.as_text()
    assert report.verdict is Verdict.INCIDENTS
    assert any(i.member == "hospital_b" and i.job == failed.value.job_id
               and i.check == "truncated" and "was aborted" in i.message
               for i in report.incidents), report.as_text()
    entries = harness.audit_events_of("hospital_b")
    assert [e["seq"] for e in entries] == list(range(len(entries)))
    assert [e["event"] for e in entries].count("service_start") == 2


def test_coordinator_prints_who_failed_and_why(harness: Harness, tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_bytes(spec_text("not-for-b", PARTIES))
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "mpc", "run", str(spec), "--federation",
                           str(harness.fed.federation_file), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Job failed at hospital_b" in proc.stdout
    assert "not allowed by its policy" in proc.stdout
    assert "nothing was released" in proc.stdout
    assert not out.exists()


def test_unreachable_peer(tmp_path: Path) -> None:
    from mpc.synth import generate_treatments

    files = generate_treatments(tmp_path / "data", PARTIES, patients_per_party=200, seed=5)
    setups = {p: PartySetup({"treatments": {"path": str(files[p])}}, ["product-use"],
                            extra={"connect_timeout_s": 5.0}) for p in PARTIES}
    # hospital_c tells its peers an address nobody can reach (TEST-NET-1, RFC 5737)
    setups["hospital_c"].extra = {"connect_timeout_s": 5.0, "peer_advertise": "192.0.2.1"}
    fed = start_federation(tmp_path / "fed", files, [], setups=setups)
    try:
        harness = Harness(fed, files)
        with pytest.raises(JobFailed) as failed:
            harness.run(spec_text("product-use", PARTIES))
        assert failed.value.party == "hospital_c"
        assert "cannot reach the job endpoint of hospital_c at 192.0.2.1:" in failed.value.cause
        # The workers keep serving: a job between the two others succeeds.
        outcome = harness.run(spec_text("product-use", PARTIES[:2], min_cell=5))
        assert outcome.table is not None
        assert fed.procs["hospital_c"].poll() is None
    finally:
        fed.stop()


def new_job_started(log: Path, seen: set[str], deadline_s: float = 60.0) -> str:
    """The id of the first job the coordinator's log shows started that is not in `seen`."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            e = json.loads(line)
            if e["event"] == "job_start" and e["job"] not in seen:
                return str(e["job"])
        time.sleep(0.1)
    raise AssertionError("the coordinator never started the job")


def test_ctrl_c_of_mpc_run_aborts_everywhere_and_is_logged(harness: Harness,
                                                           tmp_path: Path) -> None:
    spec = tmp_path / "big.toml"
    spec.write_bytes(spec_text("big", PARTIES, group_by=["bucket"], categories=BIG,
                               dataset="buckets", min_cell=2))
    log = harness.fed.logs / "coordinator.jsonl"
    seen = {e["job"] for e in harness.audit_events_of("coordinator") if "job" in e}
    proc = subprocess.Popen([sys.executable, "-m", "mpc", "run", str(spec), "--federation",
                             str(harness.fed.federation_file), "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        job = new_job_started(log, seen)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, out
    assert "interrupted; aborted everywhere" in out
    mine = harness.audit_events("coordinator", job)
    assert mine[-1]["event"] == "job_aborted", mine[-1]
    assert mine[-1]["reason"] == "interrupted at the coordinator"
    harness.assert_aborted_everywhere(job)
    assert not (tmp_path / "out").exists()
    assert_next_job_succeeds(harness)
    report = verify(harness.federation, sorted(harness.fed.logs.glob("*.jsonl")))
    assert [f for f in report.findings if f.job == job] == [], report.as_text()


def test_an_unreachable_worker_is_an_incident_not_tampering(harness: Harness) -> None:
    harness.fed.kill("hospital_c")  # down before the job: it never hears of it
    try:
        with pytest.raises(JobFailed) as failed:
            harness.run(spec_text("product-use", PARTIES))
        assert failed.value.party == "hospital_c" and "unreachable" in failed.value.cause
    finally:
        harness.fed.start_worker("hospital_c")
    job = failed.value.job_id
    assert harness.audit_events("hospital_c", job) == []
    # Everything this module did (a killed worker, a Ctrl-C, an unreachable worker, bad
    # data, refusals) verifies: no finding, and the aborted jobs' gaps as incidents.
    logs = sorted(str(p) for p in harness.fed.logs.glob("*.jsonl"))
    done = subprocess.run([sys.executable, "-m", "mpc", "audit", "verify", "--federation",
                           str(harness.fed.federation_file), *logs],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Verdict: PASS WITH INCIDENTS" in done.stdout
    report = verify(harness.federation, sorted(harness.fed.logs.glob("*.jsonl")))
    assert report.findings == [], report.as_text()
    assert any(i.member == "hospital_c" and i.job == job and i.check == "missing"
               and "never took part" in i.message for i in report.incidents)
