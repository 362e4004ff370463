"""A federation's own PKI: each member makes its keys, the operator's CA certifies them.

A member runs `mpc keys init`: its TLS key and audit signing key are made where they
stay; only a certificate signing request (CSR) and the signing public key leave. The
operator's CA (`mpc ca init`) signs a request after checking it (`sign_request`),
revokes certificates in an X.509 CRL it signs (crl.pem, next to ca.pem), and signs the
federation file together with that CRL (`sign_federation`): one detached signature over
both files' exact bytes, so neither the member list nor the revocation list can be
changed, nor an older CRL put back, without the CA's key.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from mpc.transport.pki import (
    _name,
    _pem_key,
    _write_private,
    check_member_name,
    check_role,
    load_ca,
    make_ca,
    member_certificate,
    public_pem,
)

# The OU of a CA made by `mpc ca init` (the development CA of `mpc certs` has none): a
# federation file that names such a CA must carry its signature.
FEDERATION_CA_UNIT = "federation CA"
CA_CERT, CA_KEY, CRL_FILE = "ca.pem", "ca.key", "crl.pem"
CRL_DAYS = 365  # the CRL's next update: past it, services warn that it may be stale
_CONTEXT = b"mpc-health federation signature v1\n"  # a signature made for nothing else
NO_CRL = "none"


def serial_text(serial: int) -> str:
    """A serial number as `openssl x509 -serial` shows it (upper-case hex)."""
    return f"{serial:X}"


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex (as tls.cert_info and the federation file)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# ---- a member's keys --------------------------------------------------------------------


@dataclass(frozen=True)
class MemberKeys:
    name: str
    role: str
    key: Path  # TLS private key: never leaves the folder
    signing_key: Path  # audit signing private key: never leaves the folder
    signing_public_key: Path  # to the operator
    csr: Path  # to the operator


def member_key_files(out_dir: Path, name: str, role: str) -> MemberKeys:
    return MemberKeys(name, role, out_dir / f"{name}.key", out_dir / f"{name}.sign.key",
                      out_dir / f"{name}.sign.pub", out_dir / f"{name}.csr")


def init_member_keys(out_dir: Path, name: str, role: str) -> MemberKeys:
    """A member's TLS key and Ed25519 audit key (mode 600), a CSR and the audit public key.

    Refuses to replace any of them: a new key pair (rotation) goes in a new folder."""
    check_member_name(name)
    check_role(role)
    files = member_key_files(out_dir, name, role)
    there = [p for p in (files.key, files.signing_key, files.signing_public_key, files.csr)
             if p.exists()]
    if there:
        raise FileExistsError(f"{', '.join(map(str, there))} already exist: keys are never "
                              "overwritten (for a new key pair use a new folder)")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    signing = ed25519.Ed25519PrivateKey.generate()
    _write_private(files.key, _pem_key(key), exclusive=True)
    _write_private(files.signing_key, _pem_key(signing), exclusive=True)
    files.signing_public_key.write_bytes(public_pem(signing))
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(_name(name, role))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
           .sign(key, hashes.SHA256()))
    files.csr.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return files


# ---- the operator's CA ------------------------------------------------------------------


def init_ca(out_dir: Path, validity_days: int = 3650) -> tuple[Path, Path, Path]:
    """ca.pem, ca.key (mode 600) and an empty crl.pem; refuses to replace a CA."""
    there = [out_dir / n for n in (CA_CERT, CA_KEY, CRL_FILE) if (out_dir / n).exists()]
    if there:
        raise FileExistsError(f"{', '.join(map(str, there))} already exist: a CA is never "
                              "overwritten (its certificates would stop verifying)")
    cert, key = make_ca(out_dir, validity_days, common_name="mpc-health federation CA",
                        unit=FEDERATION_CA_UNIT)
    ca_cert, ca_key = load_ca(cert, key)
    return cert, key, _write_crl(out_dir / CRL_FILE, ca_cert, ca_key, [], number=0)


def is_federation_ca(ca_pem: bytes) -> bool:
    """Whether `mpc ca init` made this CA (so federation files naming it must be signed)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    units = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return any(u.value == FEDERATION_CA_UNIT for u in units)


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):  # make_ca makes P-256 keys only
        raise ValueError(f"the CA's key is {type(key).__name__}, not an EC key")
    return key


@dataclass(frozen=True)
class Issued:
    name: str
    role: str
    serial: int
    fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime
    path: Path


def _one(subject: x509.Name, oid: x509.ObjectIdentifier, what: str) -> str:
    values = subject.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise ValueError(f"the request must hold exactly one {what}, it holds {len(values)}")
    return str(values[0].value)


def sign_request(csr_path: Path, ca_dir: Path, out: Path, validity_days: int = 365,
                 *, not_before: dt.datetime | None = None) -> Issued:
    """Check a member's CSR (its signature, name and role) and issue its certificate."""
    try:
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    except ValueError:
        raise ValueError(f"{csr_path} is not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise ValueError(f"the signature of {csr_path} does not verify: the request was "
                         "altered, or not signed with the key it carries")
    name = _one(csr.subject, NameOID.COMMON_NAME, "common name (CN)")
    role = _one(csr.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "role (OU)")
    check_member_name(name)
    check_role(role)
    try:
        sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    if sans is not None and list(sans) != [x509.DNSName(name)]:
        raise ValueError(f"the request's subject alternative names must be exactly DNS:{name}")
    public = csr.public_key()
    if not (isinstance(public, ec.EllipticCurvePublicKey)
            and isinstance(public.curve, ec.SECP256R1)):
        raise ValueError("the request's key must be an EC P-256 key (as `mpc keys init` makes)")
    if out.exists():
        raise FileExistsError(f"{out} already exists: choose another file for the certificate")
    ca_cert, ca_key = load_ca(ca_dir / CA_CERT, ca_dir / CA_KEY)
    cert = member_certificate(name, role, public, ca_cert, ca_key, not_before=not_before,
                              validity_days=validity_days)
    out.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(name, role, cert.serial_number, fingerprint(cert),
                  cert.not_valid_before_utc, cert.not_valid_after_utc, out)


# ---- revocation -------------------------------------------------------------------------


def _write_crl(path: Path, ca_cert: x509.Certificate, ca_key: object,
               revoked: list[x509.RevokedCertificate], number: int) -> Path:
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"the CA key is {type(ca_key).__name__}, not an EC key")
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now)
               .next_update(now + dt.timedelta(days=CRL_DAYS))
               .add_extension(x509.CRLNumber(number), critical=False))
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    crl = builder.sign(ca_key, hashes.SHA256())
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


def load_crl(crl_pem: bytes, ca_pem: bytes, source: str) -> x509.CertificateRevocationList:
    """The CRL, once its signature by the CA is checked (ValueError naming `source` if not)."""
    try:
        crl = x509.load_pem_x509_crl(crl_pem)
    except ValueError:
        raise ValueError(f"{source} is not a PEM certificate revocation list") from None
    ca = x509.load_pem_x509_certificate(ca_pem)
    if crl.issuer != ca.subject or not crl.is_signature_valid(_ec_public(ca)):
        raise ValueError(f"{source} is not signed by the federation's CA: a revocation list "
                         "must come from the operator (mpc ca revoke)")
    return crl


def revoked_serials(crl: x509.CertificateRevocationList) -> frozenset[int]:
    return frozenset(entry.serial_number for entry in crl)


@dataclass(frozen=True)
class Revocation:
    name: str
    serial: int
    fingerprint: str
    crl: Path
    already: bool  # it was on the list before


def revoke(cert_path: Path, ca_dir: Path) -> Revocation:
    """Add a certificate this CA issued to its CRL (ca_dir/crl.pem), re-signed."""
    ca_cert, ca_key = load_ca(ca_dir / CA_CERT, ca_dir / CA_KEY)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        raise ValueError(f"{cert_path} is not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError(f"{cert_path} was not issued by the CA in {ca_dir}") from None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = str(names[0].value) if names else "?"
    crl_path = ca_dir / CRL_FILE
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    crl = load_crl(crl_path.read_bytes(), ca_pem, str(crl_path)) if crl_path.exists() else None
    entries = list(crl) if crl is not None else []
    done = Revocation(name, cert.serial_number, fingerprint(cert), crl_path, already=True)
    if any(e.serial_number == cert.serial_number for e in entries):
        return done
    entries.append(x509.RevokedCertificateBuilder()
                   .serial_number(cert.serial_number)
                   .revocation_date(dt.datetime.now(dt.UTC))
                   .build())
    number = 0
    if crl is not None:
        with contextlib.suppress(x509.ExtensionNotFound):
            number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    _write_crl(crl_path, ca_cert, ca_key, entries, number + 1)
    return Revocation(name, cert.serial_number, fingerprint(cert), crl_path, already=False)


# ---- the federation file's signature ----------------------------------------------------


def signature_path(federation: Path) -> Path:
    """Where a federation file's detached signature is by default: federation.toml.sig."""
    return federation.with_name(federation.name + ".sig")


def _digest(data: bytes | None) -> str:
    return hashlib.sha256(data).hexdigest() if data is not None else NO_CRL


def _message(federation_sha256: str, crl_sha256: str, signed_at: str) -> bytes:
    return _CONTEXT + (f"federation_sha256={federation_sha256}\ncrl_sha256={crl_sha256}\n"
                       f"signed_at={signed_at}\n").encode()


def sign_federation(federation: Path, federation_bytes: bytes, crl: Path | None,
                    ca_dir: Path, out: Path) -> Path:
    """Write `out`: the CA's ECDSA signature over the federation file's exact bytes and
    the CRL it uses, which must be the CA's latest (ca_dir/crl.pem)."""
    ca_cert, ca_key = load_ca(ca_dir / CA_CERT, ca_dir / CA_KEY)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"the CA key is {type(ca_key).__name__}, not an EC key")
    crl_bytes = None
    if crl is not None:
        crl_bytes = crl.read_bytes()
        latest = ca_dir / CRL_FILE
        if latest.exists() and latest.read_bytes() != crl_bytes:
            raise ValueError(f"{federation} uses the revocation list {crl}, which is not the "
                             f"CA's latest ({latest}): copy {latest} there first")
        load_crl(crl_bytes, ca_cert.public_bytes(serialization.Encoding.PEM), str(crl))
    signed_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    fed_sha, crl_sha = _digest(federation_bytes), _digest(crl_bytes)
    sig = ca_key.sign(_message(fed_sha, crl_sha, signed_at), ec.ECDSA(hashes.SHA256()))
    out.write_text(
        f"# Signature of {federation.name} by the federation's CA (mpc ca sign-federation):\n"
        "# ECDSA-SHA256 over both digests and the time; any change to either file voids it.\n"
        f'federation_sha256 = "{fed_sha}"\n'
        f'crl_sha256 = "{crl_sha}"\n'
        f'signed_at = "{signed_at}"\n'
        f'signature = "{base64.b64encode(sig).decode()}"\n', encoding="utf-8")
    return out


def verify_federation(federation: Path, federation_bytes: bytes, crl: Path | None,
                      crl_bytes: bytes | None, ca_pem: bytes, sig_path: Path) -> None:
    """Raise ValueError saying what is wrong unless `sig_path` is the CA's signature of
    exactly these bytes of the federation file and of its CRL."""
    try:
        sig = tomllib.loads(sig_path.read_text(encoding="utf-8"))
        fed_sha, crl_sha = str(sig["federation_sha256"]), str(sig["crl_sha256"])
        signed_at, raw = str(sig["signed_at"]), base64.b64decode(sig["signature"],
                                                                  validate=True)
    except OSError as exc:
        raise ValueError(f"cannot read its signature {sig_path} ({exc.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{sig_path} is not a federation signature "
                         "(mpc ca sign-federation writes one)") from None
    ca = x509.load_pem_x509_certificate(ca_pem)
    try:
        _ec_public(ca).verify(raw, _message(fed_sha, crl_sha, signed_at),
                              ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError(f"{sig_path} is not a signature by the federation's CA") from None
    if _digest(federation_bytes) != fed_sha:
        raise ValueError(f"the file was changed after the CA signed it ({sig_path}, "
                         f"{signed_at}): it must be signed again (mpc ca sign-federation)")
    if _digest(crl_bytes) != crl_sha:
        what = (f"the revocation list {crl} is not the one signed with it" if crl is not None
                else "it was signed with a revocation list that is missing")
        raise ValueError(f"{what} ({sig_path}, {signed_at}): an older or altered list, or the "
                         "file must be signed again (mpc ca sign-federation)")
