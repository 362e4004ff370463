"""A TCP relay that adds a one-way delay to every byte, for measuring jobs over a WAN.

The kernel here has no netem, so latency is injected in user space: the relay accepts
connections on a local port and connects each to its target. Per connection and
direction, a reader stamps every chunk with its arrival time and a sender delivers it
at that time plus the delay. Reading and sending are separate threads, so a chunk never
waits for the one before it to be delivered: the delay is added, the bandwidth is not
throttled. TLS passes through untouched (the relay sees ciphertext only).

    with LatencyRelay("127.0.0.1:7101", one_way_s=0.025) as relay:
        dial(relay.address)          # 50 ms round trip to the service behind it
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from types import TracebackType

CHUNK = 256 * 1024
_END = None


class LatencyRelay:
    def __init__(self, target: str, one_way_s: float, host: str = "127.0.0.1") -> None:
        if one_way_s < 0:
            raise ValueError("a delay cannot be negative")
        self.target = target
        self.one_way_s = one_way_s
        self._listener = socket.create_server((host, 0))
        self.address = f"{host}:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def __enter__(self) -> LatencyRelay:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        host, _, port = self.target.rpartition(":")
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection((host, int(port)))
            except OSError:
                client.close()  # the target is down: the dialler sees a closed connection
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        chunks: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()

        def read() -> None:
            try:
                while data := source.recv(CHUNK):
                    chunks.put((time.monotonic() + self.one_way_s, data))
            except OSError:
                pass
            chunks.put(_END)

        def send() -> None:
            try:
                while (item := chunks.get()) is not _END:
                    due, data = item
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)  # pass the end of the stream on, delayed too
            except OSError:
                pass

        threading.Thread(target=read, daemon=True, name="relay-read").start()
        threading.Thread(target=send, daemon=True, name="relay-send").start()
