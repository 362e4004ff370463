"""`mpc worker`: a data party's long-running service."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from mpc.errors import MpcError


def worker(
    config: Path = typer.Option(..., "--config", help="The party's TOML config."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve jobs for this party: local tables next to its data, secret-shared computation."""
    from mpc.audit.log import AuditLog
    from mpc.cli.services import serve_until_signal, setup_logging
    from mpc.config.party import load_party_config
    from mpc.transport.capture import ENV as CAPTURE_ENV
    from mpc.transport.tls import TlsIdentity
    from mpc.worker.service import start_worker

    try:
        cfg = load_party_config(config)
        setup_logging(cfg.name, verbose)
        identity = TlsIdentity.load(cfg.tls, expected_name=cfg.name, source=cfg.source)
        audit = AuditLog.open(cfg.audit_log, cfg.signing_key, cfg.name, "party")
        server, port, _ = start_worker(cfg, identity, audit)
    except MpcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if os.environ.get(CAPTURE_ENV):
        logging.warning("TEST MODE: every message is recorded to %s", os.environ[CAPTURE_ENV])
    audit.append("service_start", listen=cfg.listen, cert_sha256=identity.fingerprint)
    logging.info("worker %s listening on %s (datasets: %s)", cfg.name, cfg.listen,
                 ", ".join(cfg.datasets))
    serve_until_signal(server, lambda: audit.append("service_stop"))
