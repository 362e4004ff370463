"""Ports for the local federation's services: outside the kernel's ephemeral range, so no
outgoing connection can take one before its service binds it."""

from __future__ import annotations

import socket

import pytest

from mpc.demo import federation
from mpc.demo.federation import _ephemeral_range, free_port


def test_ports_are_free_distinct_and_outside_the_ephemeral_range() -> None:
    low, high = _ephemeral_range()
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)  # never the same port twice in one process
    assert all(not low <= port <= high for port in ports)
    for port in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free indeed


def test_a_port_in_use_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only ports 10000-10999 to choose from, half of them held by listening sockets.
    monkeypatch.setattr(federation, "_ephemeral_range", lambda: (11000, 65535))
    monkeypatch.setattr(federation, "_handed_out", set())
    held = []
    try:
        for port in range(10000, 11000, 2):
            s = socket.socket()
            held.append(s)
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
            except OSError:
                pass  # taken by something else already: just as good
        in_use = {s.getsockname()[1] for s in held if s.getsockname()[1]}
        drawn = {free_port() for _ in range(100)}
        assert len(drawn) == 100 and all(10000 <= p < 11000 for p in drawn)
        assert not drawn & in_use
    finally:
        for s in held:
            s.close()
