"""`mpc dealer`: the trusted third party that hands out correlated randomness."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import typer

EXAMPLE = "mpc dealer --config parties/dealer.toml"


def dealer(
    config: Path = typer.Option(..., "--config", metavar="FILE", help="The dealer's TOML config."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Log debug messages too."),
) -> None:
    """Serve correlated randomness (Beaver triples and friends) to the parties' jobs."""
    from mpc.cli.services import run_service
    from mpc.config.party import load_dealer_config

    run_service(lambda: load_dealer_config(config), "dealer", "dealer", _start, verbose)


def _start(cfg: Any, identity: Any, audit: Any) -> tuple[grpc.Server, str, Callable[[], None]]:
    from mpc.dealer.service import DealerService, start_dealer

    service = DealerService(cfg.name, cfg.parties, audit, cfg.job_ttl_s, cfg.max_jobs)
    server, _ = start_dealer(identity, cfg.listen, service)
    return server, "", lambda: None  # its calls end with the server
