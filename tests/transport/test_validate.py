"""Names and ids from the network, specs, the federation file and certificates are checked
strictly: whole-string patterns, so a trailing newline or an injected quote is refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from mpc.config.federation import load_federation
from mpc.config.party import TlsFiles
from mpc.dealer.service import DealerService, start_dealer
from mpc.errors import ConfigError
from mpc.proto import dealer_pb2, dealer_pb2_grpc
from mpc.transport import pki
from mpc.transport.pki import make_dev_pki
from mpc.transport.tls import TlsIdentity, secure_channel
from mpc.transport.validate import (
    address_problem,
    head_problem,
    job_id_problem,
    name_problem,
    sha256_problem,
)

INJECTED = ['hospital_a"release_recorded', "hospital_a\n", "hospital_a\nx", "h" * 200, "",
            "Hospital_A", "-a", "a b", "hospital_ä", "a/b"]


def test_job_ids_match_as_a_whole() -> None:
    assert job_id_problem("job-00000001") is None
    for bad in ("job-00000001\n", "\njob-00000001", "job-0000 0001", "short", "x" * 65,
                "job-0000000١"):
        assert job_id_problem(bad) == "malformed job id (8 to 64 letters, digits, '-' or '_')"


@pytest.mark.parametrize("bad", INJECTED)
def test_malformed_member_names_are_refused(bad: str) -> None:
    problem = name_problem(bad)
    assert problem is not None and problem.startswith("malformed name")
    assert "1 to 63 lower-case letters" in problem
    assert len(problem) < 200  # a long name is not echoed whole


@pytest.mark.parametrize("good", ["hospital_a", "dealer", "a", "0", "insurer.b", "x-y_z",
                                  "a" * 63])
def test_member_names(good: str) -> None:
    assert name_problem(good) is None


def test_addresses_digests_and_heads_match_as_a_whole() -> None:
    assert address_problem("127.0.0.1:50051") is None
    for bad in ("127.0.0.1:50051\n", "127.0.0.1\n:50051", "127.0.0.1:٥٠", "host:0", "host"):
        assert address_problem(bad) is not None
    assert sha256_problem("ab" * 32) is None
    assert sha256_problem("ab" * 32 + "\n") is not None
    sig = "A" * 86 + "=="
    assert head_problem("coordinator", 3, "ab" * 32, sig) is None
    assert head_problem("coordinator\n", 3, "ab" * 32, sig).startswith("malformed name")
    assert head_problem("coordinator", -1, "ab" * 32, sig) is not None
    assert head_problem("coordinator", 3, "ab" * 32, sig + "\n") is not None


@pytest.mark.parametrize("bad", ['hospital_a"release_recorded', "a" * 200])
def test_certificates_are_only_made_for_member_names(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid member name: malformed name"):
        make_dev_pki(tmp_path, ["hospital_b", bad])
    with pytest.raises(ValueError, match="invalid member name"):
        make_dev_pki(tmp_path / "d", ["hospital_b"], dealer=bad)


def test_a_certificate_with_a_malformed_name_is_refused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A CA that issued a certificate to a malformed name: the name never reaches a log."""
    make_dev_pki(tmp_path, ["hospital_a", "hospital_b"])
    bad = 'hospital_a"release_recorded'
    monkeypatch.setattr(pki, "check_member_name", lambda name: name)
    pki.issue_member(tmp_path, bad, "party", tmp_path / "ca.pem", tmp_path / "ca.key")

    def ident(name: str) -> TlsIdentity:
        return TlsIdentity.load(TlsFiles(tmp_path / "ca.pem", tmp_path / f"{name}.pem",
                                         tmp_path / f"{name}.key"))

    server, port = start_dealer(ident("dealer"), "127.0.0.1:0", DealerService("dealer"))
    try:
        with secure_channel(ident(bad), f"127.0.0.1:{port}", "dealer") as channel, \
                pytest.raises(grpc.RpcError) as err:
            dealer_pb2_grpc.DealerStub(channel).Join(dealer_pb2.JoinRequest(
                job_id="job-00000001", spec_sha256="0" * 64, parties=[bad, "hospital_b"],
                rank=0), timeout=10)
    finally:
        server.stop(grace=None)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "the client certificate's name is not a member name" in err.value.details()


FEDERATION = """ca = "ca.pem"
[coordinator]
name = {coordinator}
[dealer]
name = "dealer"
address = "127.0.0.1:5000"
[parties.hospital_a]
address = "127.0.0.1:5001"
[parties.{party}]
address = "127.0.0.1:5002"
"""


@pytest.mark.parametrize("where", ["coordinator", "party"])
@pytest.mark.parametrize("bad", ['"hospital_b\\"release_recorded"', '"hospital_b\\n"',
                                 '"' + "h" * 200 + '"'])
def test_federation_member_names_are_checked(tmp_path: Path, where: str, bad: str) -> None:
    names = {"coordinator": '"coordinator"', "party": "hospital_b", where: bad}
    path = tmp_path / "federation.toml"
    path.write_text(FEDERATION.format(**names))
    with pytest.raises(ConfigError, match="malformed name") as err:
        load_federation(path)
    assert str(path) in str(err.value)


def test_a_federation_with_good_names_loads(tmp_path: Path) -> None:
    path = tmp_path / "federation.toml"
    path.write_text(FEDERATION.format(coordinator='"coordinator"', party="hospital_b"))
    assert sorted(load_federation(path).members()) == ["coordinator", "dealer", "hospital_a",
                                                       "hospital_b"]
    path.write_text(FEDERATION.format(coordinator='"hospital_b"', party="hospital_b"))
    with pytest.raises(ConfigError, match="member names must be unique"):
        load_federation(path)
