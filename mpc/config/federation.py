"""The federation file: who is where, with which certificate and audit key.

Every member holds a copy. For auditors it is self-contained: each member's Ed25519
audit key can be written inline (`signing_public_key = "ed25519:<base64>"`) and its
certificate's SHA-256 as `cert_sha256`, so logs plus this one file are enough to
verify. The coordinator's copy also names its own TLS key pair and audit signing key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpc.config.fields import Fields, host_port, load_toml
from mpc.config.party import TlsFiles
from mpc.errors import ConfigError
from mpc.transport.validate import name_problem

INLINE_KEY = "ed25519:"


@dataclass(frozen=True)
class Member:
    name: str
    role: str  # party, dealer or coordinator
    address: str | None  # host:port of its service; None for the coordinator
    cert: Path | None = None  # public certificate
    cert_sha256: str | None = None
    signing_public_key: str | None = None  # "ed25519:<base64>" or a path to a PEM file
    base_dir: Path | None = None

    def public_key(self) -> Ed25519PublicKey | None:
        """The member's audit key, or None if the federation file does not give one."""
        text = self.signing_public_key
        if text is None:
            return None
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
    return Member(
        name=member_name,
        role=role,
        address=host_port(f, "address") if needs_address else None,
        cert=f.path("cert", None),
        cert_sha256=f.str("cert_sha256", None),
        signing_public_key=f.str("signing_public_key", None),
        base_dir=f.base_dir,
    )


def load_federation(path: Path) -> Federation:
    data, _ = load_toml(path)
    f = Fields(data, str(path), base_dir=path.parent)
    ca = f.path("ca")
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
    return Federation(ca=ca, coordinator=coordinator, own=own, dealer=dealer, parties=parties,
                      source=str(path))
