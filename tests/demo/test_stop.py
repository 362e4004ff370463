"""A local federation that fails to start stops every service it started, and a worker
told to stop (SIGTERM) ends its jobs and exits at once: real processes, checked by
process group, so no job process or pool of theirs is left either."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpc.config.spec import parse_spec
from mpc.demo import FederationStartError, LocalFederation, PartySetup
from mpc.demo.federation import STOP_GRACE_S
from mpc.errors import JobFailed
from mpc.synth import generate_treatments
from tests.conftest import Harness
from tests.helpers import spec_text

pytestmark = pytest.mark.integration  # real services

PARTIES = ["hospital_a", "hospital_b"]


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


def federation(root: Path, **options: float) -> LocalFederation:
    files = generate_treatments(root / "data", PARTIES, patients_per_party=100, seed=3)
    setups = {p: PartySetup({"treatments": {"path": str(f)}}, ["product-use"],
                            bounds={"treatments": {"ledger": False}})
              for p, f in files.items()}
    return LocalFederation(root / "fed", setups, **options)


@pytest.fixture()
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pid (and process group) of every service a federation spawns in the test."""
    pids: list[int] = []
    spawn = LocalFederation._spawn

    def recording(self: LocalFederation, name: str, args: list[str]) -> None:
        spawn(self, name, args)
        pids.append(self.procs[name].pid)

    monkeypatch.setattr(LocalFederation, "_spawn", recording)
    return pids


@contextlib.contextmanager
def port_taken(address: str) -> Iterator[None]:
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        s.bind((host, int(port)))
        s.listen()
        yield


def test_a_service_that_cannot_bind_its_port_stops_the_whole_start(
        tmp_path: Path, spawned: list[int]) -> None:
    fed = federation(tmp_path)
    with port_taken(fed.addresses["hospital_b"]), pytest.raises(FederationStartError) as err:
        fed.start()
    assert err.value.service == "hospital_b" and not err.value.timed_out
    message = str(err.value)
    assert message.startswith("hospital_b exited with code 2 (its log: ")
    assert "the services started with it were stopped (dealer, hospital_a)" in message
    assert fed.addresses["hospital_b"] in message  # the tail of its log says why
    assert len(spawned) == 3 and not fed.procs
    assert [pid for pid in spawned if group_members(pid)] == []


def test_a_start_that_times_out_stops_every_service(tmp_path: Path,
                                                    spawned: list[int]) -> None:
    fed = federation(tmp_path, start_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(FederationStartError) as err:
        fed.start()
    assert time.monotonic() - started < 0.3 + STOP_GRACE_S + 5
    assert err.value.timed_out
    assert str(err.value).startswith("dealer did not start listening within 0.3 s")
    assert len(spawned) == 3 and not fed.procs
    assert [pid for pid in spawned if group_members(pid)] == []


def test_a_worker_told_to_stop_mid_job_ends_the_job_and_exits_at_once(
        tmp_path: Path) -> None:
    fed = federation(tmp_path).start()
    try:
        harness = Harness(fed, {})
        worker = fed.procs["hospital_a"]
        signalled: list[float] = []
        members: list[list[int]] = []

        def progress(party: str, phase: str, detail: str) -> None:
            if party == "hospital_a" and phase == "local_table" and not signalled:
                members.append(group_members(worker.pid))  # the worker and its job
                signalled.append(time.monotonic())
                os.kill(worker.pid, signal.SIGTERM)

        failed: list[BaseException] = []

        def run() -> None:
            try:
                harness.run_parsed(parse_spec(spec_text("product-use", PARTIES)),
                                   timeout_s=60, progress=progress)
            except BaseException as exc:  # noqa: BLE001 - the main thread asserts on it
                failed.append(exc)

        job = threading.Thread(target=run)
        job.start()
        worker.wait(timeout=120)  # ends once signalled (or the test fails below)
        exited = time.monotonic()
        job.join(timeout=60)
        assert signalled, "the job never reached its local table at hospital_a"
        assert len(members[0]) >= 2  # a job process was running when the signal came
        assert exited - signalled[0] < STOP_GRACE_S  # no SIGKILL needed
        assert worker.returncode == 0
        # Its job process went with it: at once, or once it notices its control pipe closed
        # (it may still be importing its engine on a loaded machine).
        deadline = time.monotonic() + 5
        while group_members(worker.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert group_members(worker.pid) == []
        assert len(failed) == 1 and isinstance(failed[0], JobFailed)
        assert failed[0].party == "hospital_a"  # usually: "the worker is shutting down"
        events = harness.audit_events_of("hospital_a")
        assert [e["reason"] for e in events if e["event"] == "job_aborted"] == \
            ["the worker is shutting down"]
        assert events[-1]["event"] == "service_stop"
    finally:
        fed.stop()
