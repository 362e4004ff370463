"""`mpc worker`: a data party's long-running service."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import typer


def worker(
    config: Path = typer.Option(..., "--config", help="The party's TOML config."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve jobs for this party: local tables next to its data, secret-shared computation."""
    from mpc.cli.services import run_service
    from mpc.config.party import load_party_config

    run_service(lambda: load_party_config(config), "party", "worker", _start, verbose)


def _start(cfg: Any, identity: Any, audit: Any) -> tuple[grpc.Server, str, Callable[[], None]]:
    from mpc.transport.capture import ENV as CAPTURE_ENV
    from mpc.worker.service import start_worker

    server, _, service = start_worker(cfg, identity, audit)
    if os.environ.get(CAPTURE_ENV):
        logging.warning("TEST MODE: every message is recorded to %s", os.environ[CAPTURE_ENV])
    return server, f" (datasets: {', '.join(cfg.datasets)})", service.stop
