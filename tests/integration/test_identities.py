"""Identities and authorization against real workers: every call is checked against the
role it needs, refusals are clear and logged, and policies decide which jobs run."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest

from mpc.config.party import TlsFiles
from mpc.config.spec import parse_spec
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from mpc.proto import worker_pb2, worker_pb2_grpc
from mpc.runner.coordinator import Coordinator
from mpc.synth import generate_treatments
from mpc.transport.pki import issue_member, make_dev_pki
from mpc.transport.tls import TlsIdentity, secure_channel
from tests.conftest import Harness, start_federation
from tests.helpers import spec_text

PARTIES = ["hospital_a", "hospital_b"]
PINNED = spec_text("pinned-use", PARTIES, min_cell=5)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("identities")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=200, seed=29)
    setups = {p: PartySetup({"treatments": {"path": str(files[p])}},
                            ["product-use", "pinned-use"],
                            pinned={"pinned-use": hashlib.sha256(PINNED).hexdigest()})
              for p in PARTIES}
    fed = start_federation(root / "fed", files, [], setups=setups)
    try:
        yield Harness(fed, files)
    finally:
        fed.stop()


def submit(harness: Harness, ident: TlsIdentity) -> Any:
    with secure_channel(ident, harness.fed.addresses["hospital_a"], "hospital_a") as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)
        return list(stub.Submit(worker_pb2.SubmitRequest(job_id="identity-check-1",
                                                         spec_toml=PINNED), timeout=10))


def service_log(harness: Harness, name: str) -> str:
    return (harness.fed.service_logs / f"{name}.log").read_text()


def wait_for(harness: Harness, name: str, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in service_log(harness, name):
        assert time.monotonic() < deadline, f"{name}'s log never said {text!r}"
        time.sleep(0.1)


def load(folder: Path, name: str, ca: Path) -> TlsIdentity:
    return TlsIdentity.load(TlsFiles(ca, folder / f"{name}.pem", folder / f"{name}.key"))


def test_wrong_role_is_refused_and_logged(harness: Harness) -> None:
    party = load(harness.fed.certs, "hospital_b", harness.fed.certs / "ca.pem")
    with pytest.raises(grpc.RpcError) as err:
        submit(harness, party)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "has role 'party'; this call needs coordinator" in err.value.details()
    wait_for(harness, "hospital_a", "refused a call from")


@pytest.mark.parametrize("case", ["other-ca", "expired", "no-certificate"])
def test_bad_certificates_are_refused_and_logged(harness: Harness, tmp_path: Path,
                                                 case: str) -> None:
    ca = harness.fed.certs / "ca.pem"
    before = service_log(harness, "hospital_a").count("Handshake failed")
    if case == "other-ca":
        make_dev_pki(tmp_path, ["x"])
        ident = load(tmp_path, "coordinator", ca)
    elif case == "expired":
        issue_member(tmp_path, "coordinator", "coordinator", ca, harness.fed.certs / "ca.key",
                     not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=30),
                     validity_days=1)
        ident = load(tmp_path, "coordinator", ca)
    if case == "no-certificate":
        creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
        channel = grpc.secure_channel(harness.fed.addresses["hospital_a"], creds, options=[
            ("grpc.ssl_target_name_override", "hospital_a")])
        with channel, pytest.raises(grpc.RpcError) as err:
            list(worker_pb2_grpc.WorkerStub(channel).Submit(worker_pb2.SubmitRequest(),
                                                            timeout=10))
    else:
        with pytest.raises(grpc.RpcError) as err:
            submit(harness, ident)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake fails
    deadline = time.monotonic() + 10
    while service_log(harness, "hospital_a").count("Handshake failed") <= before:
        assert time.monotonic() < deadline, "the worker did not log the refused handshake"
        time.sleep(0.1)


def test_a_coordinator_not_in_the_policy_is_refused(harness: Harness, tmp_path: Path) -> None:
    issue_member(tmp_path, "rogue_coordinator", "coordinator", harness.fed.certs / "ca.pem",
                 harness.fed.certs / "ca.key")
    events = submit(harness, load(tmp_path, "rogue_coordinator", harness.fed.certs / "ca.pem"))
    assert events[-1].phase == worker_pb2.JobEvent.FAILED
    assert events[-1].failure.code == "POLICY"
    assert "coordinator 'rogue_coordinator' is not allowed" in events[-1].failure.message


def test_a_pinned_spec_that_changed_is_refused(harness: Harness) -> None:
    assert harness.run(PINNED).table is not None
    changed = PINNED.replace(b"min_cell = 5", b"min_cell = 6")
    with pytest.raises(JobFailed) as failed:
        harness.run(changed)
    assert failed.value.party in PARTIES
    assert "is pinned to SHA-256" in failed.value.cause


def test_correlations_only_from_the_configured_dealer(harness: Harness) -> None:
    """A coordinator that points the parties at another server for their tuples: its
    certificate is not the dealer's, so the parties refuse it and the job fails."""
    misdirected = replace(harness.federation, dealer=replace(
        harness.federation.dealer, address=harness.fed.addresses["hospital_b"]))
    coordinator = Coordinator(misdirected, harness.identity, timeout_s=120)
    started = time.monotonic()
    with pytest.raises(JobFailed) as failed:
        coordinator.run(parse_spec(spec_text("product-use", PARTIES)))
    assert "dealer dealer: join failed (UNAVAILABLE" in failed.value.cause
    assert time.monotonic() - started < 30
