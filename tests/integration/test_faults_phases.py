"""Faults in the middle of a job: the dealer or the coordinator killed, a peer that stops
answering, a slow link. Each job aborts at every party within the configured timeouts,
releases nothing, is recorded as aborted in the audit logs, and the next job succeeds."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc.config.spec import parse_spec
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from mpc.runner.coordinator import Coordinator
from mpc.synth import generate_treatments
from tests.conftest import Harness, start_federation
from tests.helpers import plaintext_release, spec_text
from tests.integration.test_faults import BIG, write_buckets

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
PEER_TIMEOUT_S = 4.0
BIG_SPEC = spec_text("big", PARTIES, group_by=["bucket"], categories=BIG, dataset="buckets",
                     min_cell=2)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("phases")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=300, seed=17)
    setups = {}
    for i, party in enumerate(PARTIES):
        write_buckets(root / "data" / party / "buckets.csv", seed=10 + i)
        setups[party] = PartySetup(
            {"treatments": {"path": str(files[party])},
             "buckets": {"path": str(root / "data" / party / "buckets.csv")}},
            ["product-use", "big"], job_timeout_s=120,
            extra={"connect_timeout_s": 5.0, "limits": {"peer_timeout_s": PEER_TIMEOUT_S}})
    fed = start_federation(root / "fed", files, [], setups=setups)
    try:
        yield Harness(fed, files)
    finally:
        fed.stop()


def next_job_is_correct(harness: Harness) -> None:
    text = spec_text("product-use", PARTIES, min_cell=5)
    outcome = harness.run(text)
    keep, value, _ = plaintext_release(harness.files, parse_spec(text), outcome.rules)
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)


def job_processes(worker_pid: int) -> list[int]:
    """The worker's job processes: the children of its forkserver (worker/warm.py), not the
    forkserver itself nor the resource tracker."""
    parents: dict[int, list[tuple[int, bytes]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append((int(entry.name),
                                                 (entry / "cmdline").read_bytes()))
    servers = [pid for pid, cmdline in parents.get(worker_pid, []) if b"forkserver" in cmdline]
    return [pid for server in servers for pid, _ in parents.get(server, [])]


def fail_at_disclosure(harness: Harness, fault: Any) -> tuple[JobFailed, float]:
    """Run the big job, inject `fault` when disclosure control starts; return the failure
    and the seconds from the fault to the coordinator's report."""
    fired: list[float] = []

    def progress(party: str, phase: str, detail: str) -> None:
        if phase == "disclosure" and not fired:
            fired.append(time.monotonic())
            fault()

    with pytest.raises(JobFailed) as failed:
        harness.run(BIG_SPEC, progress=progress, timeout_s=120)
    assert fired, "the job ended before the fault"
    return failed.value, time.monotonic() - fired[0]


def test_dealer_killed(harness: Harness) -> None:
    failure, seconds = fail_at_disclosure(harness, lambda: harness.fed.kill("dealer"))
    assert "dealer" in failure.cause and "failed" in failure.cause
    assert seconds < 30
    harness.assert_aborted_everywhere(failure.job_id)
    harness.fed.start_services(["dealer"])
    next_job_is_correct(harness)


def test_peer_stops_answering(harness: Harness) -> None:
    stopped: list[int] = []

    def freeze() -> None:
        for pid in job_processes(harness.fed.procs["hospital_b"].pid):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

    failure, seconds = fail_at_disclosure(harness, freeze)
    assert stopped, "no job process of hospital_b to stop"
    assert failure.party == "hospital_b"
    assert f"got no message from hospital_b within {PEER_TIMEOUT_S:g} s" in failure.cause
    assert seconds < PEER_TIMEOUT_S + 15
    harness.assert_aborted_everywhere(failure.job_id)
    for pid in stopped:  # the worker killed its frozen job process
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid in job_processes(
                harness.fed.procs["hospital_b"].pid):
            time.sleep(0.2)
        assert pid not in job_processes(harness.fed.procs["hospital_b"].pid)
    next_job_is_correct(harness)


def test_coordinator_killed(harness: Harness, tmp_path: Path) -> None:
    spec = tmp_path / "big.toml"
    spec.write_bytes(BIG_SPEC)
    proc = subprocess.Popen([sys.executable, "-m", "mpc", "run", str(spec), "--federation",
                             str(harness.fed.federation_file), "--out", str(tmp_path / "out")],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "disclosure control" in line:
            proc.kill()
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    submitted = [e for e in harness.audit_events_of("coordinator") if e["event"] ==
                 "job_submitted"]
    job_id = submitted[-1]["job"]
    harness.assert_aborted_everywhere(job_id)
    reasons = {e["reason"] for p in PARTIES for e in harness.audit_events(p, job_id)
               if e["event"] == "job_aborted"}
    assert "the coordinator went away" in reasons
    assert not (tmp_path / "out").exists()
    next_job_is_correct(harness)


class DelayProxy:
    """A TCP relay that holds every chunk for `delay_s` in each direction: a slow link."""

    def __init__(self, target: str, delay_s: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.delay_s = delay_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target)
            except OSError:  # closed, or the job's endpoint is gone already
                return
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                time.sleep(self.delay_s)
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()


class SlowLinkCoordinator(Coordinator):
    """Hands out a delaying relay as hospital_c's job endpoint: its peers' links are slow."""

    def __init__(self, *args: Any, delay_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s
        self.proxies: list[DelayProxy] = []

    def _start(self, parties: Any, job_id: str, rules: Any) -> None:
        for p in parties:
            if p.name == "hospital_c":
                self.proxies.append(DelayProxy(p.endpoint, self.delay_s))
                p.endpoint = self.proxies[-1].address
        super()._start(parties, job_id, rules)


def run_slow(harness: Harness, delay_s: float) -> Any:
    coordinator = SlowLinkCoordinator(harness.federation, harness.identity,
                                      timeout_s=120, audit=harness.audit, delay_s=delay_s)
    try:
        return coordinator.run(parse_spec(spec_text("product-use", PARTIES, min_cell=5)))
    finally:
        for proxy in coordinator.proxies:
            proxy.close()


def test_slow_link(harness: Harness) -> None:
    # Slower, still within the timeouts: the job completes with the right table.
    outcome = run_slow(harness, delay_s=0.02)
    keep, value, _ = plaintext_release(
        harness.files, parse_spec(spec_text("product-use", PARTIES, min_cell=5)), outcome.rules)
    np.testing.assert_array_equal(outcome.table.value, value)
    # Slower than the peer timeout: aborted everywhere, in about that time.
    started = time.monotonic()
    with pytest.raises(JobFailed) as failed:
        run_slow(harness, delay_s=PEER_TIMEOUT_S + 2)
    assert time.monotonic() - started < 40
    assert "hospital_c" in str(failed.value)
    harness.assert_aborted_everywhere(failed.value.job_id)
    next_job_is_correct(harness)
