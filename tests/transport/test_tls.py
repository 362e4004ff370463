"""Mutual TLS: a real server refuses callers without a valid certificate of the right role."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import pytest

from mpc.config.party import TlsFiles
from mpc.dealer.service import DealerService, start_dealer
from mpc.proto import dealer_pb2, dealer_pb2_grpc
from mpc.transport.pki import issue_member, make_dev_pki
from mpc.transport.tls import TlsIdentity, cert_info, secure_channel


def identity(folder: Path, name: str, ca: Path | None = None) -> TlsIdentity:
    return TlsIdentity.load(TlsFiles(ca or folder / "ca.pem", folder / f"{name}.pem",
                                     folder / f"{name}.key"))


@pytest.fixture(scope="module")
def dealer(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pki")
    make_dev_pki(folder, ["hospital_a", "hospital_b"])
    server, port = start_dealer(identity(folder, "dealer"), "127.0.0.1:0",
                                DealerService("dealer"))
    yield folder, f"127.0.0.1:{port}"
    server.stop(grace=None)


def join(ident: TlsIdentity, address: str, server_name: str = "dealer") -> dealer_pb2.JoinReply:
    with secure_channel(ident, address, server_name) as channel:
        return dealer_pb2_grpc.DealerStub(channel).Join(
            dealer_pb2.JoinRequest(job_id="job-0123456789", spec_sha256="0" * 64,
                                   parties=["hospital_a", "hospital_b"], rank=0), timeout=10)


def test_party_certificate_is_accepted(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    assert len(join(identity(folder, "hospital_a"), address).seed) == 32


def test_wrong_role_is_refused(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    with pytest.raises(grpc.RpcError) as err:
        join(identity(folder, "coordinator"), address)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "role 'coordinator'" in err.value.details()


def test_certificate_of_another_party_cannot_take_its_rank(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    with pytest.raises(grpc.RpcError) as err:
        join(identity(folder, "hospital_b"), address)  # claims rank 0 = hospital_a
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hospital_b is not rank 0" in err.value.details()


def test_certificate_from_another_ca_is_refused(dealer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    make_dev_pki(tmp_path, ["hospital_a"])  # same names, different CA
    rogue = TlsIdentity.load(TlsFiles(folder / "ca.pem", tmp_path / "hospital_a.pem",
                                      tmp_path / "hospital_a.key"))
    with pytest.raises(grpc.RpcError) as err:
        join(rogue, address)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake fails


def test_no_client_certificate_is_refused(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    creds = grpc.ssl_channel_credentials(root_certificates=(folder / "ca.pem").read_bytes())
    options = [("grpc.ssl_target_name_override", "dealer")]
    with grpc.secure_channel(address, creds, options=options) as channel, \
            pytest.raises(grpc.RpcError) as err:
        dealer_pb2_grpc.DealerStub(channel).Join(dealer_pb2.JoinRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_expired_certificate_is_refused(dealer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    issue_member(tmp_path, "hospital_a", "party", folder / "ca.pem", folder / "ca.key",
                 not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=10), validity_days=1)
    with pytest.raises(grpc.RpcError) as err:
        join(identity(tmp_path, "hospital_a", ca=folder / "ca.pem"), address)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_server_must_hold_the_expected_name(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address = dealer
    with pytest.raises(grpc.RpcError) as err:
        join(identity(folder, "hospital_a"), address, server_name="hospital_b")
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_dev_pki_names_roles_and_protects_keys(tmp_path: Path) -> None:
    members = make_dev_pki(tmp_path, ["hospital_a"])
    info = cert_info(members["hospital_a"].cert.read_bytes())
    assert (info.name, info.role) == ("hospital_a", "party")
    assert cert_info(members["dealer"].cert.read_bytes()).role == "dealer"
    for m in members.values():
        assert m.key.stat().st_mode & 0o077 == 0
        assert m.signing_key.stat().st_mode & 0o077 == 0
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="invalid member name"):
        make_dev_pki(tmp_path / "other", ["Bad Name"])


def test_a_private_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    from mpc.audit.log import load_signing_key
    from mpc.errors import ConfigError

    make_dev_pki(tmp_path, ["hospital_a"])
    (tmp_path / "hospital_a.key").chmod(0o644)
    with pytest.raises(ConfigError, match="accessible to others .*chmod 600"):
        identity(tmp_path, "hospital_a")
    (tmp_path / "hospital_a.sign.key").chmod(0o640)
    with pytest.raises(ConfigError, match="hospital_a.sign.key is accessible to others"):
        load_signing_key(tmp_path / "hospital_a.sign.key")


def test_a_worker_refuses_to_start_with_an_exposed_key(tmp_path: Path) -> None:
    import subprocess
    import sys

    from mpc.demo import LocalFederation, PartySetup

    fed = LocalFederation(tmp_path, {"hospital_a": PartySetup({"t": {"path": "t.csv"}}, ["x"])})
    (fed.certs / "hospital_a.key").chmod(0o644)
    proc = subprocess.run([sys.executable, "-m", "mpc", "worker", "--config",
                           str(fed.party_config("hospital_a"))], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "hospital_a.key is accessible to others" in proc.stderr
