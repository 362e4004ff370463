"""A whole federation on loopback: certificates, configs and real service processes.

Used by `mpc demo` and by the integration tests. Every service is a separate
process started through the `mpc` command line (workers, dealer), listening with
mutual TLS on a free loopback port; the coordinator runs in the calling process.
"""

from __future__ import annotations

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
    job_timeout_s: float = 300.0
    bounds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # dataset -> bounds
    extra: Mapping[str, Any] = field(default_factory=dict)  # more top-level config fields


class LocalFederation:
    def __init__(self, root: Path, parties: Mapping[str, PartySetup],
                 env: Mapping[str, str] | None = None) -> None:
        self.root = root
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

    def _wait_listening(self, name: str, timeout_s: float = 60.0) -> None:
        log = self.service_logs / f"{name}.log"
        offset = self._offsets.get(name, 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = log.read_bytes()[offset:].decode(errors="replace")
            if "listening on" in text:
                return
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}:\n{text[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start listening within {timeout_s:.0f} s")

    def _log_size(self, name: str) -> int:
        log = self.service_logs / f"{name}.log"
        return log.stat().st_size if log.exists() else 0

    def _command(self, name: str) -> list[str]:
        if name == DEALER:
            return ["dealer", "--config", str(self.dealer_config)]
        return ["worker", "--config", str(self.party_config(name))]

    def start_services(self, names: Sequence[str]) -> None:
        """Start services in parallel; return when every one is listening."""
        for name in names:
            self._offsets[name] = self._log_size(name)
            self._spawn(name, self._command(name))
        for name in names:
            self._wait_listening(name)

    def start_worker(self, party: str) -> None:
        self.start_services([party])

    def start(self) -> LocalFederation:
        self.start_services([DEALER, *self.parties])
        return self

    def kill(self, name: str) -> None:
        """SIGKILL a service and its job processes (a crash, not a shutdown)."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()

    def __enter__(self) -> LocalFederation:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
