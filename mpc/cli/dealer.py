"""`mpc dealer`: the trusted third party that hands out correlated randomness."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from mpc.errors import MpcError


def dealer(
    config: Path = typer.Option(..., "--config", help="The dealer's TOML config."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Serve correlated randomness (Beaver triples and friends) to the parties' jobs."""
    from mpc.audit.log import AuditLog
    from mpc.cli.services import serve_until_signal, setup_logging
    from mpc.config.party import load_dealer_config
    from mpc.dealer.service import DealerService, start_dealer
    from mpc.transport.tls import TlsIdentity

    try:
        cfg = load_dealer_config(config)
        setup_logging(cfg.name, verbose)
        identity = TlsIdentity.load(cfg.tls, expected_name=cfg.name, source=cfg.source)
        audit = AuditLog.open(cfg.audit_log, cfg.signing_key, cfg.name, "dealer")
        service = DealerService(cfg.name, cfg.parties, audit, cfg.job_ttl_s)
        server, _ = start_dealer(identity, cfg.listen, service)
    except MpcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    audit.append("service_start", listen=cfg.listen, cert_sha256=identity.fingerprint)
    logging.info("dealer %s listening on %s", cfg.name, cfg.listen)
    serve_until_signal(server, lambda: audit.append("service_stop"))
