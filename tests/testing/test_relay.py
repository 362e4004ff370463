"""The latency relay: bytes pass unchanged and in order, each direction at least its delay
later, and a closed end is passed on."""

from __future__ import annotations

import socket
import threading
import time

from mpc.testing.relay import LatencyRelay


def echo_server() -> tuple[socket.socket, str]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def test_bytes_arrive_unchanged_after_the_round_trip_delay() -> None:
    server, address = echo_server()
    payload = bytes(range(256)) * 4096  # 1 MiB, in many chunks
    with server, LatencyRelay(address, one_way_s=0.05) as relay:
        host, _, port = relay.address.rpartition(":")
        with socket.create_connection((host, int(port))) as client:
            start = time.monotonic()
            client.sendall(b"x")
            assert client.recv(1) == b"x"
            assert time.monotonic() - start >= 0.1  # there and back: a lower bound only
            client.sendall(payload)
            got = b""
            while len(got) < len(payload):
                got += client.recv(1 << 20)
            assert got == payload
            client.shutdown(socket.SHUT_WR)
            assert client.recv(1) == b""  # the echo server saw the end and closed


def test_a_relay_to_nothing_closes_the_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as gone:
        address = f"127.0.0.1:{gone.getsockname()[1]}"
    with LatencyRelay(address, one_way_s=0.0) as relay:
        host, _, port = relay.address.rpartition(":")
        with socket.create_connection((host, int(port))) as client:
            client.settimeout(10)
            assert client.recv(1) == b""
