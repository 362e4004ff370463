"""The federation's own PKI: members' CSRs checked and certified, revoked certificates
refused at a real gRPC call, expired ones in the handshake, and the federation file
refused once changed after the CA signed it."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mpc.config.federation import load_federation
from mpc.config.party import TlsFiles
from mpc.dealer.service import DealerService, start_dealer
from mpc.errors import ConfigError
from mpc.proto import dealer_pb2, dealer_pb2_grpc
from mpc.transport.ca import (
    init_ca,
    init_member_keys,
    is_federation_ca,
    revoke,
    serial_text,
    sign_federation,
    sign_request,
    signature_path,
)
from mpc.transport.pki import make_dev_pki
from mpc.transport.tls import TlsIdentity, cert_info, secure_channel

MEMBERS = {"hospital_a": "party", "hospital_b": "party", "dealer": "dealer",
           "coordinator": "coordinator"}


def federation_pki(root: Path) -> Path:
    """A CA folder with a certificate for every member, each made from its own keys."""
    ca = root / "ca"
    init_ca(ca)
    for name, role in MEMBERS.items():
        keys = init_member_keys(root / "keys" / name, name, role)
        sign_request(keys.csr, ca, ca / f"{name}.pem")
    return ca


def identity(root: Path, name: str) -> TlsIdentity:
    return TlsIdentity.load(TlsFiles(root / "ca" / "ca.pem", root / "ca" / f"{name}.pem",
                                     root / "keys" / name / f"{name}.key"))


def join(ident: TlsIdentity, address: str) -> dealer_pb2.JoinReply:
    with secure_channel(ident, address, "dealer") as channel:
        return dealer_pb2_grpc.DealerStub(channel).Join(
            dealer_pb2.JoinRequest(job_id="job-0123456789", spec_sha256="0" * 64,
                                   parties=["hospital_a", "hospital_b"], rank=0), timeout=10)


def request(key: ec.EllipticCurvePrivateKey, cn: str, ou: str) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def revoked_dealer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A dealer whose CA revoked hospital_b's certificate before the dealer started."""
    root = tmp_path_factory.mktemp("fed")
    ca = federation_pki(root)
    revoke(ca / "hospital_b.pem", ca)
    server, port = start_dealer(identity(root, "dealer"), "127.0.0.1:0",
                                DealerService("dealer"))
    yield root, f"127.0.0.1:{port}"
    server.stop(grace=None)


def test_a_member_makes_its_keys_and_the_ca_certifies_its_request(tmp_path: Path) -> None:
    ca = federation_pki(tmp_path)
    assert is_federation_ca((ca / "ca.pem").read_bytes())
    assert (ca / "ca.key").stat().st_mode & 0o777 == 0o600
    for name, role in MEMBERS.items():
        keys = tmp_path / "keys" / name
        assert (keys / f"{name}.key").stat().st_mode & 0o777 == 0o600
        assert (keys / f"{name}.sign.key").stat().st_mode & 0o777 == 0o600
        info = cert_info((ca / f"{name}.pem").read_bytes())
        assert (info.name, info.role) == (name, role)
        cert = x509.load_pem_x509_certificate((ca / f"{name}.pem").read_bytes())
        assert cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [name]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {o.dotted_string for o in eku} == {"1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"}
    with pytest.raises(FileExistsError, match="never overwritten"):
        init_member_keys(tmp_path / "keys" / "hospital_a", "hospital_a", "party")
    with pytest.raises(FileExistsError, match="never overwritten"):
        init_ca(ca)


@pytest.mark.parametrize(("cn", "ou", "message"), [
    ("Hospital A", "party", "invalid member name"),
    ("hospital_a", "admin", "unknown role 'admin'"),
])
def test_a_request_with_a_bad_name_or_role_is_refused(tmp_path: Path, cn: str, ou: str,
                                                      message: str) -> None:
    init_ca(tmp_path / "ca")
    csr = tmp_path / "bad.csr"
    csr.write_bytes(request(ec.generate_private_key(ec.SECP256R1()), cn, ou))
    with pytest.raises(ValueError, match=message):
        sign_request(csr, tmp_path / "ca", tmp_path / "bad.pem")
    assert not (tmp_path / "bad.pem").exists()


def test_an_altered_request_is_refused(tmp_path: Path) -> None:
    init_ca(tmp_path / "ca")
    keys = init_member_keys(tmp_path / "k", "hospital_a", "party")
    csr = x509.load_pem_x509_csr(keys.csr.read_bytes())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1  # the signature's last byte
    keys.csr.write_bytes(x509.load_der_x509_csr(bytes(der)).public_bytes(
        serialization.Encoding.PEM))
    with pytest.raises(ValueError, match="does not verify"):
        sign_request(keys.csr, tmp_path / "ca", tmp_path / "a.pem")


def test_a_revoked_certificate_is_refused_at_the_call(revoked_dealer) -> None:  # type: ignore[no-untyped-def]
    root, address = revoked_dealer
    assert len(join(identity(root, "hospital_a"), address).seed) == 32  # not revoked
    serial = cert_info((root / "ca" / "hospital_b.pem").read_bytes()).serial
    with pytest.raises(grpc.RpcError) as err:
        join(identity(root, "hospital_b"), address)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.value.details() == (f"certificate of hospital_b (serial {serial_text(serial)}) "
                                   "is revoked")


def test_an_expired_certificate_is_refused_in_the_handshake(
        revoked_dealer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    root, address = revoked_dealer
    keys = init_member_keys(tmp_path, "hospital_a", "party")
    sign_request(keys.csr, root / "ca", tmp_path / "old.pem", validity_days=1,
                 not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    with caplog.at_level(logging.WARNING, logger="mpc.transport.tls"):
        old = TlsIdentity.load(TlsFiles(root / "ca" / "ca.pem", tmp_path / "old.pem",
                                        keys.key))
    assert "old.pem of hospital_a expired on" in caplog.text
    with pytest.raises(grpc.RpcError) as err:
        join(old, address)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_revocation_list_not_signed_by_the_ca_is_refused(tmp_path: Path) -> None:
    ca = federation_pki(tmp_path)
    init_ca(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "crl.pem", ca / "crl.pem")
    with pytest.raises(ConfigError, match="crl.pem is not signed by the federation's CA"):
        identity(tmp_path, "dealer")


def write_federation(root: Path, extra: str = "") -> Path:
    parties = "".join(f'[parties.{p}]\naddress = "127.0.0.1:{7101 + i}"\n'
                      f'cert = "ca/{p}.pem"\n'
                      f'signing_public_key = "keys/{p}/{p}.sign.pub"\n'
                      for i, p in enumerate(("hospital_a", "hospital_b")))
    path = root / "federation.toml"
    path.write_text(f'ca = "ca/ca.pem"\n{extra}'
                    '[coordinator]\nname = "coordinator"\ncert = "ca/coordinator.pem"\n'
                    '[dealer]\nname = "dealer"\naddress = "127.0.0.1:7100"\n'
                    f'cert = "ca/dealer.pem"\n{parties}', encoding="utf-8")
    return path


def sign(path: Path, ca: Path) -> None:
    fed = load_federation(path, check_signature=False)
    sign_federation(path, path.read_bytes(), fed.crl, ca, signature_path(path))


def test_a_signed_federation_loads_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    ca = federation_pki(tmp_path)
    path = write_federation(tmp_path)
    with pytest.raises(ConfigError, match=r"federation.toml: signature: the file is not signed"):
        load_federation(path)  # a federation CA's file must be signed
    sign(path, ca)
    fed = load_federation(path)
    assert fed.signed and fed.crl == ca / "crl.pem" and fed.revoked == frozenset()
    path.write_text(path.read_text().replace("7101", "7666"), encoding="utf-8")
    with pytest.raises(ConfigError, match="federation.toml: signature: refused: the file was "
                                          "changed after the CA signed it"):
        load_federation(path)


def test_an_older_revocation_list_voids_the_signature(tmp_path: Path) -> None:
    ca = federation_pki(tmp_path)
    path = write_federation(tmp_path)
    before = (ca / "crl.pem").read_bytes()
    revoke(ca / "hospital_b.pem", ca)
    shutil.copy(ca / "hospital_a.pem", ca / "hospital_b.pem")  # (only its listed cert counts)
    sign(path, ca)
    assert load_federation(path).revoked
    (ca / "crl.pem").write_bytes(before)  # put back the list from before the revocation
    with pytest.raises(ConfigError, match="revocation list .*crl.pem is not the one signed"):
        load_federation(path)


def test_a_listed_revoked_certificate_is_refused_when_the_federation_loads(
        tmp_path: Path) -> None:
    ca = federation_pki(tmp_path)
    path = write_federation(tmp_path)
    revoke(ca / "hospital_b.pem", ca)
    with pytest.raises(ConfigError, match=r"parties.hospital_b.cert: certificate of "
                                          r"hospital_b \(serial [0-9A-F]+\) is revoked"):
        load_federation(path, check_signature=False)


def test_a_signature_can_be_required_of_a_development_federation(tmp_path: Path) -> None:
    make_dev_pki(tmp_path / "ca", ["hospital_a", "hospital_b"])
    (tmp_path / "keys").mkdir()
    for name in MEMBERS:
        (tmp_path / "keys" / name).mkdir()
        shutil.copy(tmp_path / "ca" / f"{name}.sign.pub", tmp_path / "keys" / name)
    path = write_federation(tmp_path)
    assert not load_federation(path).signed  # development CA: not required
    with pytest.raises(ConfigError, match="a signed federation file is required"):
        load_federation(path, require_signature=True)
    sign(path, tmp_path / "ca")
    assert load_federation(path, require_signature=True).signed


def test_rotation_lists_keys_and_fingerprints_and_refuses_both_forms(tmp_path: Path) -> None:
    federation_pki(tmp_path)
    path = write_federation(tmp_path)
    text = path.read_text()
    fp = cert_info((tmp_path / "ca" / "hospital_a.pem").read_bytes()).fingerprint
    rotated = text.replace('signing_public_key = "keys/hospital_a/hospital_a.sign.pub"\n',
                           'signing_public_keys = ["keys/hospital_b/hospital_b.sign.pub", '
                           f'"keys/hospital_a/hospital_a.sign.pub"]\ncert_sha256 = ["{"0" * 64}", '
                           f'"{fp}"]\n')
    path.write_text(rotated, encoding="utf-8")
    member = load_federation(path, require_signature=False,
                             check_signature=False).party("hospital_a")
    assert len(member.public_keys()) == 2 and member.cert_sha256 == fp
    path.write_text(rotated.replace("cert_sha256 = [", 'signing_public_key = "x"\n'
                                                      "cert_sha256 = ["), encoding="utf-8")
    with pytest.raises(ConfigError, match="signing_public_keys: give signing_public_key"):
        load_federation(path, check_signature=False)
