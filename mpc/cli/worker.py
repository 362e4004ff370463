"""`mpc worker`: a data party's long-running service."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import typer

EXAMPLE = "mpc worker --config parties/hospital_a/party.toml"


def worker(
    config: Path = typer.Option(..., "--config", metavar="FILE", help="The party's TOML config."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Log debug messages too."),
    check: bool = typer.Option(False, "--check", help="Open every dataset as a job would, "
                               "count its rows, print their shapes (columns and a row-count "
                               "class, never a value) and exit: 0 if all open, 1 if not."),
) -> None:
    """Serve jobs for this party: local tables next to its data, secret-shared computation.
    At start every file dataset is opened as a job would; a problem stops the worker with a
    message naming party.toml's field."""
    from mpc.cli.services import run_service
    from mpc.config.party import load_party_config

    if check:
        raise typer.Exit(_check(config))
    run_service(lambda: load_party_config(config), "party", "worker", _start, verbose)


def _check(config: Path) -> int:
    """`mpc worker --check`: the dry run of every dataset; the exit status."""
    from mpc.config.party import load_party_config
    from mpc.errors import MpcError
    from mpc.worker.dataset_check import check_datasets

    try:
        cfg = load_party_config(config)
    except MpcError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    shapes, errors = check_datasets(cfg, dry_run=True)
    for shape in shapes:
        typer.echo(f"ok     {shape.name} ({shape.kind}): {shape.rows}; {len(shape.columns)} "
                   f"columns: {', '.join(shape.columns)}")
    for error in errors:
        typer.echo(f"error  {error}")
    typer.echo(f"{len(shapes)} of {len(shapes) + len(errors)} datasets open")
    return 1 if errors else 0


def _start(cfg: Any, identity: Any, audit: Any) -> tuple[grpc.Server, str, Callable[[], None]]:
    from mpc.errors import ConfigError
    from mpc.transport.capture import ENV as CAPTURE_ENV
    from mpc.worker.dataset_check import check_datasets
    from mpc.worker.service import start_worker

    _, problems = check_datasets(cfg)  # files and OMOP folders; databases at each job
    if problems:
        raise ConfigError(cfg.source, "a dataset cannot be opened, so the worker does not "
                          "start: " + "; ".join(str(p) for p in problems)
                          + " (mpc worker --check shows every dataset's state)")
    server, _, service = start_worker(cfg, identity, audit)
    if os.environ.get(CAPTURE_ENV):
        logging.warning("TEST MODE: every message is recorded to %s", os.environ[CAPTURE_ENV])
    return server, f" (datasets: {', '.join(cfg.datasets)})", service.stop
