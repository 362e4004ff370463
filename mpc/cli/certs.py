"""`mpc certs`: a development CA plus certificates and signing keys for a federation
(development only: a real federation's members make their own keys, see keys.py, ca.py)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

EXAMPLE = "mpc certs --out certs --parties hospital_a,hospital_b,hospital_c"
DEVELOPMENT_ONLY = ("development only: every private key made in one place; for a real "
                    "federation use mpc keys init and mpc ca sign")


def certs(
    out: Path = typer.Option(..., "--out", metavar="DIR",
                             help="Folder for the CA, certificates and keys."),
    parties: str = typer.Option(..., "--parties", metavar="NAMES",
                                help="Comma-separated party names."),
    dealer: str = typer.Option("dealer", metavar="NAME", help="The dealer's name."),
    coordinator: str = typer.Option("coordinator", metavar="NAME",
                                    help="The coordinator's name."),
    days: int = typer.Option(365, metavar="DAYS", help="Validity of every certificate, in days."),
) -> None:
    """Make a development CA, and a TLS certificate and Ed25519 signing key for each member.

    Development only: every private key made in one place; for a real federation use mpc
    keys init and mpc ca sign.
    """
    from mpc.transport.pki import make_dev_pki

    names = [p.strip() for p in parties.split(",") if p.strip()]
    if not names:
        raise typer.BadParameter("give at least one party", param_hint="--parties")
    try:
        members = make_dev_pki(out, names, dealer=dealer, coordinator=coordinator,
                               validity_days=days)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--parties") from None
    console = Console()
    console.print(f"CA: {out / 'ca.pem'} (its key {out / 'ca.key'} stays with whoever issues)",
                  markup=False)  # a path is not markup
    for m in members.values():
        console.print(f"{m.role:<11} {m.name:<16} {m.cert.name}, {m.key.name} (TLS), "
                      f"{m.signing_key.name} / {m.signing_public_key.name} (audit signing)",
                      markup=False)
    console.print("Private keys are written readable by their owner only (mode 600).")
    console.print(f"Note: {DEVELOPMENT_ONLY}.", markup=False)
