"""Shared start-up of the long-running services (worker, dealer): identity, audit log,
logging, and a prompt, orderly shutdown on SIGTERM or SIGINT."""

from __future__ import annotations

import logging
import os
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

# start(config, identity, audit) -> (server, what to log once it listens, what ends the
# service's own work when it stops: a worker's job processes)
Starter = Callable[[Any, TlsIdentity, AuditLog], tuple[grpc.Server, str, Callable[[], None]]]
# Calls still open once the service's work has ended get this long to finish. Short: a
# worker's job streams end as soon as their jobs do, and one that waited for the grace
# of a long call would not stop when it is told to.
SHUTDOWN_GRACE_S = 1.0


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
        server, description, end_work = start(cfg, identity, audit)
    except MpcError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before "listening": whoever waits for
        signal.signal(sig, lambda *_: stop.set())  # that line may stop us right after it
    audit.append(AuditEvent.SERVICE_START, listen=cfg.listen, cert_sha256=identity.fingerprint)
    logging.info("%s %s listening on %s%s", label, cfg.name, cfg.listen, description)
    stop.wait()
    logging.info("shutting down")
    end_work()
    audit.append(AuditEvent.SERVICE_STOP)
    server.stop(grace=SHUTDOWN_GRACE_S).wait()
    # A handler still blocked in a long wait (the dealer's for a job's lists) would hold
    # up the interpreter's exit, which joins the server's threads; the audit log is on
    # disk already (every append is synced).
    logging.shutdown()
    os._exit(0)
