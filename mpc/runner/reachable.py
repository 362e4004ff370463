"""Before a job: wait until the parties' workers and the dealer are reachable.

Services started a moment ago take seconds to listen (a worker imports its engine first),
so a coordinator that submits at once would fail a job that a short wait lets run. The
wait is bounded (`mpc run --wait`); whoever is still unreachable after it is reported by
the job itself, with the usual message naming the party.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc

from mpc.config.federation import Federation
from mpc.transport.tls import TlsIdentity, secure_channel

POLL_S = 0.5


def _worker_ready(identity: TlsIdentity, address: str, name: str, timeout_s: float) -> bool:
    """A mutual-TLS channel to the worker comes up within timeout_s."""
    channel = secure_channel(identity, address, name)
    try:
        grpc.channel_ready_future(channel).result(timeout=max(timeout_s, 0.01))
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def _listening(address: str, timeout_s: float) -> bool:
    """Something accepts TCP connections at host:port (the dealer talks TLS to parties
    only, so the coordinator checks no more than that)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def wait_reachable(federation: Federation, identity: TlsIdentity, parties: Sequence[str],
                   wait_s: float, on_waiting: Callable[[list[str]], None] | None = None
                   ) -> list[str]:
    """Wait up to wait_s for every party's worker and the dealer; returns who is still
    unreachable (empty: all are). `on_waiting` hears, once, who is not reachable yet."""
    deadline = time.monotonic() + wait_s
    members = federation.members()
    addresses = {name: members[name].address for name in parties
                 if name in members and members[name].address is not None}
    pending = list(addresses)
    dealer = federation.dealer
    dealer_pending = dealer.address is not None
    told = False
    with ThreadPoolExecutor(max_workers=min(16, len(pending) + 1)) as pool:
        while True:
            left = max(0.0, deadline - time.monotonic())
            step = min(POLL_S * 4, left)
            ready = list(pool.map(_worker_ready, [identity] * len(pending),
                                  [addresses[n] for n in pending], pending,
                                  [step] * len(pending)))
            pending = [n for n, ok in zip(pending, ready, strict=True) if not ok]
            if dealer_pending:
                assert dealer.address is not None
                dealer_pending = not _listening(dealer.address, min(step, 2.0) or 0.1)
            waiting = pending + ([dealer.name] if dealer_pending else [])
            if not waiting or time.monotonic() >= deadline:
                return waiting
            if not told and on_waiting is not None:
                on_waiting(waiting)
                told = True
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
