"""Mutual TLS for every channel: identities, credentials, servers, channels and peer checks."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mpc.config.keys import read_private_key
from mpc.config.party import TlsFiles
from mpc.errors import ConfigError, TransportError
from mpc.transport.ca import CRL_FILE, load_crl, revoked_serials, serial_text
from mpc.transport.validate import name_problem

log = logging.getLogger(__name__)

# Messages are chunked well below this; the limit only bounds a misbehaving sender.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # Notice a dead peer within seconds even while a stream is idle.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
SERVER_OPTIONS: list[tuple[str, int]] = [
    *CHANNEL_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True)
class CertInfo:
    name: str
    role: str
    fingerprint: str  # SHA-256 of the DER certificate, hex
    serial: int = 0
    not_after: dt.datetime | None = None


# Serial numbers on each CA's signed CRL, by the CA certificate's SHA-256: what peer_identity
# refuses. Filled when a service loads its identity (the CRL next to its CA file).
_REVOKED: dict[str, frozenset[int]] = {}


def install_revocations(ca_pem: bytes, serials: Iterable[int]) -> None:
    _REVOKED[hashlib.sha256(ca_pem).hexdigest()] = frozenset(serials)


def is_revoked(serial: int) -> bool:
    return any(serial in serials for serials in _REVOKED.values())


def load_revocations(ca: Path, ca_pem: bytes, source: str) -> frozenset[int]:
    """The serials on the CRL next to the CA file (crl.pem), checked against the CA;
    none if there is no such file. Installed for peer_identity."""
    crl_path = ca.parent / CRL_FILE
    try:
        crl_pem = crl_path.read_bytes()
    except FileNotFoundError:
        return frozenset()
    except OSError as exc:
        raise ConfigError(source, f"cannot read {crl_path} ({exc.strerror})",
                          field="tls.ca") from None
    try:
        crl = load_crl(crl_pem, ca_pem, str(crl_path))
    except ValueError as exc:
        raise ConfigError(source, str(exc), field="tls.ca") from None
    if crl.next_update_utc is not None and crl.next_update_utc < dt.datetime.now(dt.UTC):
        log.warning("the revocation list %s was due for an update on %s: ask the operator "
                    "for the current one", crl_path, f"{crl.next_update_utc:%Y-%m-%d}")
    serials = revoked_serials(crl)
    install_revocations(ca_pem, serials)
    return serials


def cert_info(pem: bytes) -> CertInfo:
    cert = x509.load_pem_x509_certificate(pem)
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ou = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertInfo(
        name=str(cn[0].value) if cn else "",
        role=str(ou[0].value) if ou else "",
        fingerprint=hashlib.sha256(der).hexdigest(),
        serial=cert.serial_number,
        not_after=cert.not_valid_after_utc,
    )


@dataclass(frozen=True)
class TlsIdentity:
    """This process's key pair and the federation's CA, loaded once."""

    name: str
    role: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    fingerprint: str

    @classmethod
    def load(cls, files: TlsFiles, expected_name: str | None = None,
             source: str = "config") -> TlsIdentity:
        blobs = {"key": read_private_key(files.key, source, "tls.key")}
        for field in ("ca", "cert"):
            path = getattr(files, field)
            try:
                blobs[field] = path.read_bytes()
            except OSError as exc:
                raise ConfigError(source, f"cannot read {path} ({exc.strerror})",
                                  field=f"tls.{field}") from None
        try:
            info = cert_info(blobs["cert"])
        except ValueError as exc:
            raise ConfigError(source, f"not a PEM certificate: {exc}", field="tls.cert") from None
        if expected_name is not None and info.name != expected_name:
            raise ConfigError(
                source,
                f"certificate {files.cert} is issued to {info.name!r}, not {expected_name!r}",
                field="tls.cert",
            )
        if info.not_after is not None and info.not_after < dt.datetime.now(dt.UTC):
            # Peers refuse it in the TLS handshake, where the reason is hard to see.
            log.warning("certificate %s of %s expired on %s: every peer will refuse it; "
                        "ask the operator for a new one (mpc ca sign)", files.cert, info.name,
                        f"{info.not_after:%Y-%m-%d %H:%M} UTC")
        if info.serial in load_revocations(files.ca, blobs["ca"], source):
            log.warning("certificate %s of %s (serial %s) is revoked: every peer will refuse "
                        "it", files.cert, info.name, serial_text(info.serial))
        return cls(info.name, info.role, blobs["ca"], blobs["cert"], blobs["key"],
                   info.fingerprint)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key_pem, self.cert_pem)],
            root_certificates=self.ca_pem,
            require_client_auth=True,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem,
            private_key=self.key_pem,
            certificate_chain=self.cert_pem,
        )


def secure_channel(identity: TlsIdentity, address: str, peer_name: str) -> grpc.Channel:
    """A channel that only talks to a server whose certificate names `peer_name`."""
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer_name)]
    return grpc.secure_channel(address, identity.channel_credentials(), options=options)


def bind_server(server: grpc.Server, identity: TlsIdentity, address: str) -> int:
    """Bind `address` (port 0: any free port) with mutual TLS; return the port."""
    try:
        port = server.add_secure_port(address, identity.server_credentials())
    except RuntimeError as exc:
        raise TransportError(f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise TransportError(f"cannot listen on {address} (address in use or not local?)")
    return port


@dataclass(frozen=True)
class PeerIdentity:
    name: str
    role: str
    fingerprint: str


def peer_identity(context: grpc.ServicerContext) -> PeerIdentity:
    """Who is calling, from the client certificate the TLS handshake verified."""
    auth = context.auth_context()
    pem = auth.get("x509_pem_cert")
    if not pem:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
    # types-grpcio types auth_context() as Mapping[str, bytes]; grpc documents (and returns)
    # a list of values per property, here the PEM certificate chain: pem[0] is bytes.
    info = cert_info(pem[0])  # type: ignore[arg-type]
    problem = name_problem(info.name)
    if problem:  # the name goes into logs and audit entries: only well-formed ones do
        log.warning("refused a call from %s (certificate %s…): %s", context.peer(),
                    info.fingerprint[:16], problem)
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"the client certificate's name is not a member name: {problem}")
    if is_revoked(info.serial):
        message = f"certificate of {info.name} (serial {serial_text(info.serial)}) is revoked"
        log.warning("refused a call from %s: %s", context.peer(), message)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, message)
    return PeerIdentity(info.name, info.role, info.fingerprint)


def require_peer(context: grpc.ServicerContext, roles: Iterable[str],
                 names: Iterable[str] | None = None) -> PeerIdentity:
    """Abort the call unless the caller's certificate holds one of `roles` (and `names`)."""
    peer = peer_identity(context)
    roles = tuple(roles)
    problem = None
    if peer.role not in roles:
        problem = (f"certificate of {peer.name!r} has role {peer.role!r}; this call needs "
                   f"{' or '.join(roles)}")
    elif names is not None and peer.name not in tuple(names):
        problem = f"{peer.name!r} is not allowed to make this call"
    if problem:
        log.warning("refused a call from %s (certificate %s…): %s", context.peer(),
                    peer.fingerprint[:16], problem)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, problem)
    return peer
