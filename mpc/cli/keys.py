"""`mpc keys init`: a member makes its own keys; only a signing request leaves the folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mpc.cli.usage import Command, example

EXAMPLE = "mpc keys init --name hospital_a --role party --out keys/hospital_a"

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,  # plain text, as in app.py
                  help="A member's own keys for a real federation (the operator certifies "
                       "them with mpc ca sign).",
                  epilog=example(EXAMPLE))


@app.command("init", cls=Command, epilog=example(EXAMPLE))
def init(
    name: str = typer.Option(..., "--name", metavar="NAME",
                             help="The member's name, as the federation file lists it."),
    role: str = typer.Option(..., "--role", metavar="ROLE",
                             help="party, dealer or coordinator."),
    out: Path = typer.Option(..., "--out", metavar="DIR",
                             help="Folder for the keys; they never leave it."),
) -> None:
    """Make this member's TLS key and audit signing key (mode 600), a certificate signing
    request and the signing public key. Refuses to overwrite keys."""
    from mpc.transport.ca import init_member_keys

    try:
        files = init_member_keys(out, name, role)
    except (ValueError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    lines = [
        f"Made the keys of {files.role} {files.name} in {out}:",
        f"  {files.key}  TLS private key (mode 600)",
        f"  {files.signing_key}  audit signing private key (mode 600)",
        "Send these two files to the federation's operator:",
        f"  {files.csr}  certificate signing request (CN = {files.name}, role {files.role})",
        f"  {files.signing_public_key}  audit signing public key",
        f"The private keys never leave {out}. The operator sends back your certificate "
        f"({files.name}.pem), the CA certificate (ca.pem) and its revocation list (crl.pem).",
    ]
    console = Console()
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # no markup, no wrap
