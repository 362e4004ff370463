"""A whole federation on loopback: certificates, configs and real service processes.

Used by `mpc demo` and by the integration tests. Every service is a separate
process started through the `mpc` command line (workers, dealer), listening with
mutual TLS on a free loopback port; the coordinator runs in the calling process.
Each service leads a session of its own, so one signal to its process group reaches
the job processes and blinding pools it spawned; a federation that fails to start
stops every service it started before it says what failed.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from mpc.config.federation import inline_public_key
from mpc.transport.pki import make_dev_pki
from mpc.transport.tls import cert_info

DEALER = "dealer"
COORDINATOR = "coordinator"
START_TIMEOUT_S = 60.0  # how long each service may take to start listening
JOB_TIMEOUT_S = 300.0  # the parties' job_timeout_s unless a setup says otherwise
STOP_GRACE_S = 5.0  # after SIGTERM, before the SIGKILL of whatever is left


# Ports this process has handed out: a service may not have bound its port yet.
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port that is free now, for a service that will bind it shortly.

    Drawn from below the kernel's ephemeral range: a port that bind(0) returns lies inside
    that range, where any outgoing connection (the tests make thousands) can take it as its
    source port before the service binds it, and the service then fails to start.
    """
    low, high = _ephemeral_range()
    ranges = [r for r in ((10000, low), (high + 1, 65536)) if r[1] - r[0] >= 1000]
    rng = random.SystemRandom()
    for _ in range(200 if ranges else 0):
        port = rng.randrange(*rng.choice(ranges))
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no room outside the ephemeral range: the old way
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        low, high = (int(v) for v in text.split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


@dataclass
class PartySetup:
    """What one party's config says beyond the defaults."""

    datasets: dict[str, dict[str, str]]  # name -> {"path": ...} or {"url": ..., "query": ...}
    usecases: Sequence[str]
    pinned: Mapping[str, str] = field(default_factory=dict)
    min_cell_floor: int = 1
    min_contributors_floor: int = 1
    coordinators: Sequence[str] = (COORDINATOR,)
    job_timeout_s: float = JOB_TIMEOUT_S
    bounds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # dataset -> bounds
    extra: Mapping[str, Any] = field(default_factory=dict)  # more top-level config fields


class FederationStartError(RuntimeError):
    """A service of the federation did not start; every service that was started for it
    has been stopped."""

    def __init__(self, service: str, problem: str, log: Path, stopped: Sequence[str],
                 timed_out: bool, tail: str = "") -> None:
        self.service = service
        self.timed_out = timed_out  # it did not listen in time (rather than exit)
        others = (f"; the services started with it were stopped ({', '.join(stopped)})"
                  if stopped else "")
        super().__init__(f"{service} {problem} (its log: {log}){others}"
                         + (f":\n{tail}" if tail else ""))


class LocalFederation:
    def __init__(self, root: Path, parties: Mapping[str, PartySetup],
                 env: Mapping[str, str] | None = None,
                 start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.root = root
        self.start_timeout_s = start_timeout_s
        self.setups = dict(parties)
        self.parties = list(parties)
        self.env = {**os.environ, **(env or {})}
        self.certs = root / "certs"
        self.logs = root / "logs"  # audit logs only: an auditor verifies this folder
        self.service_logs = root / "services"
        self.federation_file = root / "federation.toml"
        self.addresses = {p: f"127.0.0.1:{free_port()}" for p in self.parties}
        self.dealer_address = f"127.0.0.1:{free_port()}"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._offsets: dict[str, int] = {}  # where each service's latest start begins in its log
        self._write()

    def party_config(self, party: str) -> Path:
        return self.root / "parties" / party / "party.toml"

    @property
    def dealer_config(self) -> Path:
        return self.root / "dealer" / "dealer.toml"

    def _write(self) -> None:
        make_dev_pki(self.certs, self.parties, dealer=DEALER, coordinator=COORDINATOR)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.service_logs.mkdir(parents=True, exist_ok=True)
        c = self.certs.resolve()
        for party, setup in self.setups.items():
            doc: dict[str, Any] = {
                "name": party,
                "listen": self.addresses[party],
                "dealer": DEALER,
                "job_timeout_s": setup.job_timeout_s,
                "results_dir": str((self.root / "results" / party).resolve()),
                "tls": {"ca": str(c / "ca.pem"), "cert": str(c / f"{party}.pem"),
                        "key": str(c / f"{party}.key")},
                "signing": {"key": str(c / f"{party}.sign.key")},
                "audit": {"log": str((self.logs / f"{party}.jsonl").resolve())},
                "datasets": {name: {**ds, **({"bounds": dict(setup.bounds[name])}
                                             if name in setup.bounds else {})}
                             for name, ds in setup.datasets.items()},
                "policy": {"coordinators": list(setup.coordinators),
                           "usecases": list(setup.usecases),
                           "min_cell_floor": setup.min_cell_floor,
                           "min_contributors_floor": setup.min_contributors_floor,
                           **({"pinned": dict(setup.pinned)} if setup.pinned else {})},
                **setup.extra,
            }
            path = self.party_config(party)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(tomli_w.dumps(doc))
        self.dealer_config.parent.mkdir(parents=True, exist_ok=True)
        self.dealer_config.write_text(tomli_w.dumps({
            "name": DEALER, "listen": self.dealer_address,
            "tls": {"ca": str(c / "ca.pem"), "cert": str(c / f"{DEALER}.pem"),
                    "key": str(c / f"{DEALER}.key")},
            "signing": {"key": str(c / f"{DEALER}.sign.key")},
            "audit": {"log": str((self.logs / f"{DEALER}.jsonl").resolve())},
        }))
        def public(name: str) -> dict[str, str]:
            # Inline keys and fingerprints: an auditor needs only this file and the logs.
            return {"cert": f"certs/{name}.pem",
                    "cert_sha256": cert_info((c / f"{name}.pem").read_bytes()).fingerprint,
                    "signing_public_key": inline_public_key(c / f"{name}.sign.pub")}

        self.federation_file.write_text(tomli_w.dumps({
            "ca": "certs/ca.pem",
            "coordinator": {"name": COORDINATOR, **public(COORDINATOR),
                            "key": f"certs/{COORDINATOR}.key",
                            "signing_key": f"certs/{COORDINATOR}.sign.key",
                            "audit_log": f"logs/{COORDINATOR}.jsonl"},
            "dealer": {"name": DEALER, "address": self.dealer_address, **public(DEALER)},
            "parties": {p: {"address": self.addresses[p], **public(p)} for p in self.parties},
        }))

    # ---- processes ----------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str]) -> None:
        log = (self.service_logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-u", "-m", "mpc", *args], stdout=log, stderr=subprocess.STDOUT,
            env=self.env, start_new_session=True)
        log.close()

    def _wait_listening(self, names: Sequence[str]) -> None:
        """Return once every service is listening; each may take start_timeout_s after
        the one before it. A service that exits meanwhile fails the start at once."""
        waiting = list(names)
        deadline = time.monotonic() + self.start_timeout_s
        while waiting:
            for name in list(waiting):
                text = self._log_text(name)
                if "listening on" in text:
                    waiting.remove(name)
                    deadline = time.monotonic() + self.start_timeout_s
                elif _ended(self.procs[name]):
                    raise _NotStarted(name, f"exited with code {_exit_code(self.procs[name])}",
                                      tail=text[-2000:])
            if waiting and time.monotonic() > deadline:
                raise _NotStarted(waiting[0], f"did not start listening within "
                                              f"{self.start_timeout_s:g} s", timed_out=True)
            time.sleep(0.05)

    def _log_text(self, name: str) -> str:
        """What the service wrote since its latest start."""
        log = self.service_logs / f"{name}.log"
        return log.read_bytes()[self._offsets.get(name, 0):].decode(errors="replace")

    def _log_size(self, name: str) -> int:
        log = self.service_logs / f"{name}.log"
        return log.stat().st_size if log.exists() else 0

    def _command(self, name: str) -> list[str]:
        if name == DEALER:
            return ["dealer", "--config", str(self.dealer_config)]
        return ["worker", "--config", str(self.party_config(name))]

    def start_services(self, names: Sequence[str]) -> None:
        """Start services in parallel; return when every one is listening. If one does
        not start (or the caller is interrupted), stop every service of `names` that
        was started, then raise FederationStartError naming the one that failed."""
        try:
            for name in names:
                self._offsets[name] = self._log_size(name)
                self._spawn(name, self._command(name))
            self._wait_listening(names)
        except BaseException as exc:
            started = [n for n in names if n in self.procs]
            self._stop(started, STOP_GRACE_S)
            if isinstance(exc, _NotStarted):
                raise FederationStartError(exc.service, exc.problem,
                                           self.service_logs / f"{exc.service}.log",
                                           [n for n in started if n != exc.service],
                                           exc.timed_out, exc.tail) from None
            raise

    def start_worker(self, party: str) -> None:
        self.start_services([party])

    def start(self) -> LocalFederation:
        self.start_services([DEALER, *self.parties])
        return self

    def kill(self, name: str) -> None:
        """SIGKILL a service and its job processes (a crash, not a shutdown)."""
        proc = self.procs.pop(name, None)
        if proc is not None:
            _kill_group(proc)
            proc.wait(timeout=10)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every service (each ends its jobs and closes its audit log), then
        SIGKILL the process group of any still running after `grace_s`, and of any that
        left a process behind."""
        self._stop(list(self.procs), grace_s)

    def _stop(self, names: Sequence[str], grace_s: float) -> None:
        procs = [self.procs.pop(n) for n in names if n in self.procs]
        for proc in procs:
            if not _ended(proc):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not all(_ended(p) for p in procs):
            time.sleep(0.05)
        for proc in procs:
            _kill_group(proc)
            proc.wait(timeout=10)

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _NotStarted(Exception):
    def __init__(self, service: str, problem: str, timed_out: bool = False,
                 tail: str = "") -> None:
        self.service, self.problem, self.timed_out, self.tail = service, problem, timed_out, tail


# A service is reaped only by proc.wait() after _kill_group: until then its pid, which is
# also its process group's id, cannot be reused, so signalling the group is always safe.
def _ended(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the service's process has ended, without reaping it."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere
        return True


def _exit_code(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.returncode is not None:
        return proc.returncode
    with contextlib.suppress(ChildProcessError):
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None:
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
    return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the service's process group: the service, if it still runs, and whatever it
    left behind (job processes, blinding pools)."""
    if proc.returncode is None:  # not reaped: the group id is still this service's
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
