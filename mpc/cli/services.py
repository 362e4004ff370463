"""Shared start-up of the long-running services (worker, dealer): identity, audit log,
logging, and an orderly shutdown on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import grpc
import typer

from mpc.audit.events import AuditEvent
from mpc.audit.log import AuditLog
from mpc.errors import MpcError
from mpc.transport.tls import TlsIdentity

# start(config, identity, audit) -> (server, what to log once it listens)
Starter = Callable[[Any, TlsIdentity, AuditLog], tuple[grpc.Server, str]]


def run_service(load: Callable[[], Any], role: str, label: str, start: Starter,
                verbose: bool) -> None:
    """Load the config, open the TLS identity and the audit log, start, serve until a signal.
    A config or start-up problem is one clear line on stderr and exit status 2."""
    try:
        cfg = load()
        logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                            format=f"%(asctime)s {cfg.name} %(levelname)s %(message)s")
        identity = TlsIdentity.load(cfg.tls, expected_name=cfg.name, source=cfg.source)
        audit = AuditLog.open(cfg.audit_log, cfg.signing_key, cfg.name, role)
        server, description = start(cfg, identity, audit)
    except MpcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    audit.append(AuditEvent.SERVICE_START, listen=cfg.listen, cert_sha256=identity.fingerprint)
    logging.info("%s %s listening on %s%s", label, cfg.name, cfg.listen, description)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    logging.info("shutting down")
    audit.append(AuditEvent.SERVICE_STOP)
    server.stop(grace=5).wait()
