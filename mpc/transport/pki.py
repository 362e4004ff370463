"""A development PKI (`mpc certs`): one CA, and per member a TLS certificate plus an
Ed25519 signing key.

Each certificate names its holder twice: CN = the member's name and a DNS SAN with
the same name, which is what channels verify (ssl_target_name_override). OU holds
the role (party, dealer, coordinator), so a service can check that a caller holds
the role the call expects, not just any certificate from the CA.
A real federation's members make their own keys and the operator's CA signs their
requests (ca.py); both issue certificates with `member_certificate`.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mpc.transport.validate import name_problem

ROLES = ("party", "dealer", "coordinator")


def check_member_name(name: str) -> str:
    """The rule every member name follows wherever it appears (validate.name_problem)."""
    problem = name_problem(name)
    if problem:
        raise ValueError(f"invalid member name: {problem}")
    return name


@dataclass(frozen=True)
class MemberFiles:
    name: str
    role: str
    cert: Path
    key: Path
    signing_key: Path
    signing_public_key: Path


def _write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    # Created 0600 from the start: a key must never be readable by others, even briefly.
    # `exclusive`: never replace a key that is there (a member's only copy of its key).
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _can_issue(key: PrivateKeyTypes) -> TypeGuard[CertificateIssuerPrivateKeyTypes]:
    """Whether x509 signs certificates with `key` (a CA key read from a file)."""
    return isinstance(key, get_args(CertificateIssuerPrivateKeyTypes))


def _name(cn: str, ou: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mpc-health federation")]
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(out_dir: Path, validity_days: int = 365, *,
            common_name: str = "mpc-health development CA",
            unit: str | None = None) -> tuple[Path, Path]:
    """ca.pem and ca.key (mode 600) in `out_dir`; `unit` marks a CA (ca.FEDERATION_CA_UNIT)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, unit))
        .issuer_name(_name(common_name, unit))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = out_dir / "ca.pem", out_dir / "ca.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem_key(key))
    return cert_path, key_path


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    return role


def load_ca(ca_cert_path: Path, ca_key_path: Path
            ) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    """The CA's certificate and the key that signs with it."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    if not _can_issue(ca_key):  # (x509's sign() would refuse it, with the same exception)
        raise TypeError(f"CA key {ca_key_path} cannot sign certificates "
                        f"({type(ca_key).__name__})")
    return ca_cert, ca_key


def member_certificate(
    name: str,
    role: str,
    public_key: ec.EllipticCurvePublicKey,
    ca_cert: x509.Certificate,
    ca_key: CertificateIssuerPrivateKeyTypes,
    *,
    not_before: dt.datetime | None = None,
    validity_days: int = 365,
) -> x509.Certificate:
    """A member's TLS certificate (server and client use): CN and DNS SAN = name, OU = role."""
    check_member_name(name)
    check_role(role)
    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name, role))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                   ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )


def public_pem(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def issue_member(
    out_dir: Path,
    name: str,
    role: str,
    ca_cert_path: Path,
    ca_key_path: Path,
    *,
    not_before: dt.datetime | None = None,
    validity_days: int = 365,
) -> MemberFiles:
    """Issue a TLS certificate (server and client use) and an Ed25519 signing key."""
    check_member_name(name)
    check_role(role)
    ca_cert, ca_key = load_ca(ca_cert_path, ca_key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = member_certificate(name, role, key.public_key(), ca_cert, ca_key,
                              not_before=not_before, validity_days=validity_days)
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _pem_key(key))

    signing = ed25519.Ed25519PrivateKey.generate()
    sign_path, pub_path = out_dir / f"{name}.sign.key", out_dir / f"{name}.sign.pub"
    _write_private(sign_path, _pem_key(signing))
    pub_path.write_bytes(public_pem(signing))
    return MemberFiles(name, role, cert_path, key_path, sign_path, pub_path)


def make_dev_pki(
    out_dir: Path,
    parties: list[str],
    dealer: str = "dealer",
    coordinator: str = "coordinator",
    validity_days: int = 365,
) -> dict[str, MemberFiles]:
    """A CA plus certificates and signing keys for every party, the dealer and the coordinator."""
    names = [*parties, dealer, coordinator]
    for n in names:
        check_member_name(n)
    if len(set(names)) != len(names):
        raise ValueError("member names must be unique across parties, dealer and coordinator")
    ca_cert, ca_key = make_ca(out_dir, validity_days)
    members = {}
    for name, role in [*((p, "party") for p in parties), (dealer, "dealer"),
                       (coordinator, "coordinator")]:
        members[name] = issue_member(out_dir, name, role, ca_cert, ca_key,
                                     validity_days=validity_days)
    return members
