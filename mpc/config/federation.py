"""The federation file: who is where, with which certificate and audit key.

Every member holds a copy. For auditors it is self-contained: each member's Ed25519
audit key can be written inline (`signing_public_key = "ed25519:<base64>"`) and its
certificate's SHA-256 as `cert_sha256`, so logs plus this one file are enough to
verify. The coordinator's copy also names its own TLS key pair and audit signing key.

Rotation: a member may list `signing_public_keys = [old, new]` (oldest first) and
`cert_sha256 = [old, new]`. Signed federations: a detached signature by the CA
(federation.toml.sig, or the file `signature` names) covers this file's bytes and the
CRL it uses (`crl`, by default crl.pem next to `ca`); it is checked whenever it exists,
and required when the CA is one `mpc ca init` made or the caller asks for it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpc.config.fields import Fields, host_port, load_toml
from mpc.config.party import TlsFiles
from mpc.errors import ConfigError
from mpc.transport.ca import (
    is_federation_ca,
    load_crl,
    revoked_serials,
    serial_text,
    signature_path,
    verify_federation,
)
from mpc.transport.validate import name_problem, sha256_problem

INLINE_KEY = "ed25519:"


@dataclass(frozen=True)
class Member:
    name: str
    role: str  # party, dealer or coordinator
    address: str | None  # host:port of its service; None for the coordinator
    cert: Path | None = None  # public certificate
    cert_sha256: str | None = None  # the current certificate's
    signing_public_key: str | None = None  # "ed25519:<base64>" or a path to a PEM file
    base_dir: Path | None = None
    # Rotation: every audit key and certificate the member has held, oldest first (the
    # single fields above are the last of each).
    signing_public_keys: tuple[str, ...] = ()
    cert_sha256s: tuple[str, ...] = ()

    def public_key(self) -> Ed25519PublicKey | None:
        """The member's current audit key, or None if the federation file gives none."""
        keys = self.public_keys()
        return keys[-1] if keys else None

    def public_keys(self) -> list[Ed25519PublicKey]:
        """Every audit key the member has held, oldest first."""
        texts = self.signing_public_keys or (
            (self.signing_public_key,) if self.signing_public_key is not None else ())
        return [self._read_key(text) for text in texts]

    def _read_key(self, text: str) -> Ed25519PublicKey:
        try:
            if text.startswith(INLINE_KEY):
                return Ed25519PublicKey.from_public_bytes(
                    base64.b64decode(text[len(INLINE_KEY):], validate=True))
            path = Path(text)
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            key = serialization.load_pem_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(str(self.base_dir or "federation"),
                              f"cannot read the audit key of {self.name}: {exc}",
                              field="signing_public_key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(str(self.base_dir or "federation"),
                              f"the audit key of {self.name} is not Ed25519",
                              field="signing_public_key")
        return key


def inline_public_key(path: Path) -> str:
    """A PEM public key file as the inline form the federation file accepts."""
    key = serialization.load_pem_public_key(path.read_bytes())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return INLINE_KEY + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class CoordinatorSecrets:
    """What only the coordinator's own copy holds."""

    tls: TlsFiles | None
    signing_key: Path | None
    audit_log: Path | None


@dataclass(frozen=True)
class Federation:
    ca: Path
    coordinator: Member
    own: CoordinatorSecrets
    dealer: Member
    parties: dict[str, Member]
    source: str = "<federation>"
    crl: Path | None = None  # the revocation list in use (checked against the CA)
    revoked: frozenset[int] = frozenset()  # serial numbers on it
    signed: bool = False  # its signature by the CA was checked
    signature: Path | None = None  # where its detached signature is (or goes)

    @property
    def coordinator_tls(self) -> TlsFiles | None:
        return self.own.tls

    def party(self, name: str) -> Member:
        try:
            return self.parties[name]
        except KeyError:
            known = ", ".join(sorted(self.parties)) or "none"
            raise KeyError(f"party {name!r} is not in {self.source} (known: {known})") from None

    def members(self) -> dict[str, Member]:
        return {self.coordinator.name: self.coordinator, self.dealer.name: self.dealer,
                **self.parties}


def _member(name: str, role: str, f: Fields, needs_address: bool) -> Member:
    member_name = f.str("name", name)
    problem = name_problem(member_name)
    if problem:  # member names end up in logs, audit entries and file names
        raise f.error("name", problem)
    if f.has("signing_public_key") and f.has("signing_public_keys"):
        raise f.error("signing_public_keys", "give signing_public_key (one key) or "
                                             "signing_public_keys (a list), not both")
    keys = f.str_list("signing_public_keys", ())
    fingerprints = (f.str_list("cert_sha256") if isinstance(f.raw("cert_sha256", None), list)
                    else (f.str("cert_sha256", None),))
    fingerprints = tuple(x for x in fingerprints if x is not None)
    for fp in fingerprints:
        problem = sha256_problem(fp, "certificate fingerprint")
        if problem:
            raise f.error("cert_sha256", problem)
    return Member(
        name=member_name,
        role=role,
        address=host_port(f, "address") if needs_address else None,
        cert=f.path("cert", None),
        cert_sha256=fingerprints[-1] if fingerprints else None,
        signing_public_key=keys[-1] if keys else f.str("signing_public_key", None),
        base_dir=f.base_dir,
        signing_public_keys=keys,
        cert_sha256s=fingerprints,
    )


@dataclass(frozen=True)
class _Trust:
    crl: Path | None
    revoked: frozenset[int]
    signed: bool
    signature: Path


def _check_trust(path: Path, raw: bytes, f: Fields, ca: Path,
                 require_signature: bool | None, check_signature: bool) -> _Trust:
    """Check the signature (when there is one, or one is required) and the CRL."""
    source = str(path)
    sig = f.path("signature", None) or signature_path(path)
    crl = f.path("crl", None)
    if crl is None and (ca.parent / "crl.pem").exists():
        crl = ca.parent / "crl.pem"
    try:
        ca_pem: bytes | None = ca.read_bytes()
    except OSError as exc:
        ca_pem = None  # an auditor's copy may go without: only a signature or CRL needs it
        ca_error = exc.strerror
    try:
        federation_ca = ca_pem is not None and is_federation_ca(ca_pem)
    except ValueError:
        raise f.error("ca", f"{ca} is not a PEM certificate") from None
    required = federation_ca if require_signature is None else require_signature
    signed = sig.exists() and check_signature
    required = required and check_signature
    if not (signed or required or crl is not None):
        return _Trust(None, frozenset(), False, sig)
    if ca_pem is None:
        raise f.error("ca", f"cannot read {ca} ({ca_error}): it checks the file's signature "
                            "and revocation list")
    crl_bytes, revoked = None, frozenset[int]()
    if crl is not None:
        try:
            crl_bytes = crl.read_bytes()
            revoked = revoked_serials(load_crl(crl_bytes, ca_pem, str(crl)))
        except OSError as exc:
            raise f.error("crl", f"cannot read {crl} ({exc.strerror})") from None
        except ValueError as exc:
            raise f.error("crl", str(exc)) from None
    if not signed:
        if required:
            why = ("its CA is a federation CA (mpc ca init)" if federation_ca
                   else "a signed federation file is required")
            raise ConfigError(source, f"the file is not signed ({sig} is missing) and {why}: "
                                      f"the operator signs it with `mpc ca sign-federation "
                                      f"{path.name} --ca CADIR`", field="signature")
        return _Trust(crl, revoked, False, sig)
    try:
        verify_federation(path, raw, crl, crl_bytes, ca_pem, sig)
    except ValueError as exc:
        raise ConfigError(source, f"refused: {exc}", field="signature") from None
    return _Trust(crl, revoked, True, sig)


def _refuse_revoked(members: dict[str, Member], trust: _Trust, source: str) -> None:
    """A member whose listed certificate is on the CRL is refused here, before any call."""
    if not trust.revoked:
        return
    for member in members.values():
        if member.cert is None or not member.cert.exists():
            continue
        try:
            serial = x509.load_pem_x509_certificate(member.cert.read_bytes()).serial_number
        except ValueError:
            raise ConfigError(source, f"{member.cert} is not a PEM certificate",
                              field=f"{_table(member)}.cert") from None
        if serial in trust.revoked:
            raise ConfigError(source, f"certificate of {member.name} (serial "
                                      f"{serial_text(serial)}) is revoked ({trust.crl}): give "
                                      "it its new certificate or remove it from the file",
                              field=f"{_table(member)}.cert")


def _table(member: Member) -> str:
    return f"parties.{member.name}" if member.role == "party" else member.role


def load_federation(path: Path, *, require_signature: bool | None = None,
                    check_signature: bool = True) -> Federation:
    """The federation file, checked. `require_signature`: None requires the CA's
    signature when the CA is a federation CA (mpc ca init); True/False always/never (a
    signature that exists is checked all the same). `check_signature=False` only for
    the operator about to sign it."""
    data, raw = load_toml(path)
    f = Fields(data, str(path), base_dir=path.parent)
    ca = f.path("ca")
    trust = _check_trust(path, raw, f, ca, require_signature, check_signature)
    coord = f.table("coordinator")
    assert coord is not None
    coordinator = _member("coordinator", "coordinator", coord, needs_address=False)
    tls = None
    if coord.has("key"):
        tls = TlsFiles(ca=ca, cert=coord.path("cert"), key=coord.path("key"))
    own = CoordinatorSecrets(tls=tls, signing_key=coord.path("signing_key", None),
                             audit_log=coord.path("audit_log", None))
    coord.done()
    dealer_table = f.table("dealer")
    assert dealer_table is not None
    dealer = _member("dealer", "dealer", dealer_table, needs_address=True)
    dealer_table.done()
    parties_table = f.table("parties")
    assert parties_table is not None
    parties = {}
    for name in parties_table.names():
        problem = name_problem(name)
        if problem:
            raise parties_table.error(name, problem)
        sub = parties_table.table(name)
        assert sub is not None
        member = _member(name, "party", sub, needs_address=True)
        if member.name != name:
            raise sub.error("name", f"party {name} names itself {member.name!r}: a party's "
                                    "table is named after it")
        parties[name] = member
        sub.done()
    if not parties:
        raise f.error("parties", "a federation needs at least one party")
    names = [coordinator.name, dealer.name, *parties]
    if len(set(names)) != len(names):
        raise f.error("parties", "member names must be unique across parties, dealer and "
                                 "coordinator")
    f.done()
    federation = Federation(ca=ca, coordinator=coordinator, own=own, dealer=dealer,
                            parties=parties, source=str(path), crl=trust.crl,
                            revoked=trust.revoked, signed=trust.signed,
                            signature=trust.signature)
    _refuse_revoked(federation.members(), trust, str(path))
    return federation
