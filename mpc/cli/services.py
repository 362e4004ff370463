"""Shared start-up of the long-running services (worker, dealer): logging and shutdown."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

import grpc


def setup_logging(name: str, verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format=f"%(asctime)s {name} %(levelname)s %(message)s")


def serve_until_signal(server: grpc.Server, on_stop: Callable[[], None] | None = None) -> None:
    """Block until SIGTERM or SIGINT, then stop accepting calls and let running ones end."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    logging.info("shutting down")
    if on_stop is not None:
        on_stop()
    server.stop(grace=5).wait()
