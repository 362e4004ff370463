"""`mpc ca`: the federation operator's CA certifies members' own keys, revokes
certificates and signs the federation file."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from mpc.cli.usage import Command, example

INIT_EXAMPLE = "mpc ca init --out ca"
SIGN_EXAMPLE = "mpc ca sign hospital_a.csr --ca ca --days 365 --out certs/hospital_a.pem"
REVOKE_EXAMPLE = "mpc ca revoke certs/hospital_a.pem --ca ca"
SIGN_FEDERATION_EXAMPLE = "mpc ca sign-federation federation.toml --ca ca"

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,  # plain text, as in app.py
                  help="The federation operator's certificate authority.",
                  epilog=example(SIGN_EXAMPLE))

CA_OPTION_HELP = "The CA's folder (ca.pem, ca.key, crl.pem), as mpc ca init made it."


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _say(lines: list[str]) -> None:
    console = Console()
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)  # no markup, no wrap


@app.command("init", cls=Command, epilog=example(INIT_EXAMPLE))
def init(
    out: Path = typer.Option(..., "--out", metavar="CADIR", help="Folder for the CA."),
    days: int = typer.Option(3650, "--days", metavar="DAYS", min=1,
                             help="Validity of the CA certificate, in days."),
) -> None:
    """Make the federation's CA: its key (mode 600), ca.pem and an empty revocation list."""
    from mpc.transport.ca import init_ca

    try:
        cert, key, crl = init_ca(out, days)
    except (FileExistsError, OSError) as exc:
        raise _fail(exc) from None
    _say([f"CA certificate: {cert} (to every member)",
          f"CA key: {key} (mode 600; it stays here, offline if you can)",
          f"Revocation list: {crl} (to every member, next to its ca.pem)"])


@app.command("sign", cls=Command, epilog=example(SIGN_EXAMPLE))
def sign(
    csr: Path = typer.Argument(..., metavar="CSR",
                               help="A member's certificate signing request (mpc keys init)."),
    ca: Path = typer.Option(..., "--ca", metavar="CADIR", help=CA_OPTION_HELP),
    days: int = typer.Option(365, "--days", metavar="DAYS", min=1,
                             help="Validity of the certificate, in days."),
    out: Path = typer.Option(..., "--out", metavar="CERT",
                             help="The certificate to write (PEM); never overwritten."),
) -> None:
    """Check a request (its signature, the member's name and role) and issue the member's
    certificate with that name and role."""
    from mpc.transport.ca import serial_text, sign_request

    try:
        issued = sign_request(csr, ca, out, days)
    except (ValueError, TypeError, FileExistsError, OSError) as exc:
        raise _fail(exc) from None
    _say([f"Issued {issued.path} to {issued.role} {issued.name}: serial "
          f"{serial_text(issued.serial)}, valid {issued.not_before:%Y-%m-%d} to "
          f"{issued.not_after:%Y-%m-%d}",
          f"Its entry in the federation file: cert = \"{issued.path}\", "
          f"cert_sha256 = \"{issued.fingerprint}\", and its signing_public_key (the "
          ".sign.pub it sent); then: mpc ca sign-federation FEDERATION --ca CADIR"])


@app.command("revoke", cls=Command, epilog=example(REVOKE_EXAMPLE))
def revoke(
    cert: Path = typer.Argument(..., metavar="CERT", help="The certificate to revoke (PEM)."),
    ca: Path = typer.Option(..., "--ca", metavar="CADIR", help=CA_OPTION_HELP),
) -> None:
    """Put a certificate on the CA's revocation list (CADIR/crl.pem, an X.509 CRL)."""
    from mpc.transport.ca import revoke as run_revoke
    from mpc.transport.ca import serial_text

    try:
        done = run_revoke(cert, ca)
    except (ValueError, TypeError, OSError) as exc:
        raise _fail(exc) from None
    what = "was already revoked" if done.already else "is revoked"
    _say([f"The certificate of {done.name} (serial {serial_text(done.serial)}, SHA-256 "
          f"{done.fingerprint}) {what}: {done.crl}",
          f"Copy {done.crl} to every member, next to its ca.pem (services read it when they "
          "start), and sign the federation file again (mpc ca sign-federation)."])


@app.command("sign-federation", cls=Command, epilog=example(SIGN_FEDERATION_EXAMPLE))
def sign_federation(
    federation: Path = typer.Argument(..., metavar="FEDERATION",
                                      help="The federation file (TOML)."),
    ca: Path = typer.Option(..., "--ca", metavar="CADIR", help=CA_OPTION_HELP),
) -> None:
    """Sign the federation file and the revocation list it uses, exactly as they are
    (a detached signature, FEDERATION.sig unless the file names its `signature`)."""
    from mpc.config.federation import load_federation
    from mpc.errors import MpcError
    from mpc.transport.ca import sign_federation as run_sign
    from mpc.transport.ca import signature_path

    try:
        fed = load_federation(federation, check_signature=False)  # it is about to be signed
        raw = federation.read_bytes()
        out = run_sign(federation, raw, fed.crl, ca, fed.signature or signature_path(federation))
        load_federation(federation, require_signature=True)  # as every member will read it
    except (MpcError, ValueError, TypeError, OSError) as exc:
        raise _fail(exc) from None
    crl = f" and {fed.crl}" if fed.crl else " (no revocation list)"
    _say([f"Signed {federation}{crl}: {out}",
          f"Send {federation.name} and {out.name} to every member; any change to either "
          "file voids the signature."])
