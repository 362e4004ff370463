"""Every gRPC endpoint under thousands of generated messages: each gets a clear status,
never an unhandled error (gRPC's UNKNOWN) or a crashed process, and afterwards the
federation still runs a job correctly."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc.config.party import TlsFiles
from mpc.config.spec import parse_spec
from mpc.errors import MpcError
from mpc.proto import (
    dealer_pb2,
    dealer_pb2_grpc,
    peer_pb2,
    peer_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from mpc.synth import generate_treatments
from mpc.transport.peer_mesh import PeerMesh
from mpc.transport.tls import TlsIdentity, secure_channel
from tests.conftest import Harness, start_federation
from tests.helpers import plaintext_release, spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
# Statuses a servicer gives on purpose; UNKNOWN would be an exception it did not handle.
CLEAR = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
         grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ALREADY_EXISTS}
FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

text = st.text(max_size=80)
job_ids = st.one_of(text, st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True))
names = st.one_of(st.sampled_from([*PARTIES, "dealer", "coordinator"]), text)
shapes = st.lists(st.integers(-5, 1 << 40), max_size=10)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("fuzz")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=300, seed=41)
    fed = start_federation(root / "fed", files, ["product-use"])
    try:
        yield Harness(fed, files)
    finally:
        fed.stop()


def identity(harness: Harness, name: str) -> TlsIdentity:
    certs = harness.fed.certs
    return TlsIdentity.load(TlsFiles(certs / "ca.pem", certs / f"{name}.pem",
                                     certs / f"{name}.key"))


def call(fn: Any, *args: Any) -> None:
    """Make the call; any status it ends with must be a deliberate one."""
    try:
        result = fn(*args, timeout=10)
        if hasattr(result, "__iter__") and not isinstance(result, bytes):
            for _ in result:
                pass
    except grpc.RpcError as exc:
        assert exc.code() in CLEAR, f"{exc.code()}: {exc.details()}"


def test_worker_endpoints(harness: Harness) -> None:
    with secure_channel(identity(harness, "coordinator"), harness.fed.addresses["hospital_a"],
                        "hospital_a") as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)

        @FUZZ
        @given(job_ids, st.binary(max_size=2000) | text.map(str.encode))
        def submit(job_id: str, spec: bytes) -> None:
            call(stub.Submit, worker_pb2.SubmitRequest(job_id=job_id, spec_toml=spec))

        @FUZZ
        @given(job_ids, st.dictionaries(st.integers(0, 2**32 - 1), text, max_size=6), text,
               st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1))
        def start(job_id: str, peers: dict[int, str], dealer: str, min_cell: int,
                  min_contributors: int) -> None:
            call(stub.Start, worker_pb2.StartRequest(
                job_id=job_id, peers=peers, dealer_address=dealer,
                disclosure=worker_pb2.Disclosure(min_cell=min_cell,
                                                 min_contributors=min_contributors)))

        @FUZZ
        @given(job_ids, st.text(max_size=5000))
        def abort(job_id: str, reason: str) -> None:
            call(stub.Abort, worker_pb2.AbortRequest(job_id=job_id, reason=reason))

        submit()
        start()
        abort()


def test_dealer_endpoints(harness: Harness) -> None:
    with secure_channel(identity(harness, "hospital_a"), harness.fed.dealer_address,
                        "dealer") as channel:
        stub = dealer_pb2_grpc.DealerStub(channel)

        @FUZZ
        @given(job_ids, st.one_of(text, st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
               st.lists(names, max_size=70), st.integers(0, 2**32 - 1))
        def join(job_id: str, spec: str, parties: list[str], rank: int) -> None:
            call(stub.Join, dealer_pb2.JoinRequest(job_id=job_id, spec_sha256=spec,
                                                   parties=parties, rank=rank))

        @FUZZ
        @given(job_ids, st.integers(0, 2**64 - 1), st.integers(0, 8), shapes, shapes, text)
        def correlation(job_id: str, seq: int, op: int, size0: list[int], size1: list[int],
                        torch_op: str) -> None:
            call(stub.Correlation, dealer_pb2.CorrelationRequest(
                job_id=job_id, seq=seq, op=op, size0=size0, size1=size1, torch_op=torch_op))

        @FUZZ
        @given(job_ids, st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
        def leave(job_id: str, rank: int, requests: int) -> None:
            call(stub.Leave, dealer_pb2.LeaveRequest(job_id=job_id, rank=rank,
                                                     requests=requests))

        join()
        correlation()
        leave()


frames = st.builds(
    peer_pb2.PeerFrame, kind=st.integers(0, 6), job_id=job_ids, sender=st.integers(0, 4),
    seq=st.integers(0, 3), chunk=st.integers(0, 3), chunks=st.integers(0, 1 << 31),
    dtype=st.sampled_from(["int64", "uint8", "float32", "object", ""]),
    shape=st.lists(st.integers(-3, 1 << 20), max_size=9), data=st.binary(max_size=600),
    nonce=st.binary(max_size=40), tag=st.sampled_from(["send", "all_reduce", "x" * 70]))


def test_peer_endpoint(harness: Harness) -> None:
    """A job's peer endpoint (rank 1) under random streams from a valid party certificate:
    a bad HELLO is refused; after a good one, bad frames end as a clear protocol error at
    the receiver, never as a crash or a silently wrong message."""
    job = "fuzz-job-0001"
    sender = identity(harness, "hospital_a")
    receiver_identity = identity(harness, "hospital_b")

    @settings(FUZZ, max_examples=200)
    @given(st.booleans(), st.lists(frames, max_size=6))
    def stream(valid_hello: bool, body: list[peer_pb2.PeerFrame]) -> None:
        receiver = PeerMesh(job, 1, PARTIES[:2], receiver_identity, recv_timeout_s=0.3)
        address = receiver.listen()
        hello = peer_pb2.PeerFrame(kind=peer_pb2.PeerFrame.HELLO, job_id=job, sender=0,
                                   cert_sha256=sender.fingerprint)
        first = hello if valid_hello else (body[0] if body else peer_pb2.PeerFrame())
        channel = secure_channel(sender, address, "hospital_b")
        call = peer_pb2_grpc.PeerExchangeStub(channel).Exchange(iter([first, *body]),
                                                                timeout=5)
        # Once we close the receiver, the stream's own status no longer says anything.
        ended_by_us = {grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE}
        try:
            if valid_hello:
                # What the receiver got is a whole message or a clear error, nothing else.
                with contextlib.suppress(MpcError):
                    receiver.recv_tensor(0, "send")
            else:
                with pytest.raises(grpc.RpcError) as refused:
                    for _ in call:
                        pass
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            receiver.close(grace_s=0)
        try:
            for _ in call:
                pass
        except grpc.RpcError as exc:
            assert exc.code() in CLEAR | ended_by_us, exc.details()
        channel.close()

    stream()


def test_federation_still_runs_a_correct_job(harness: Harness) -> None:
    for name, proc in harness.fed.procs.items():
        assert proc.poll() is None, f"{name} died under fuzzing"
    text_spec = spec_text("product-use", PARTIES, min_cell=5)
    outcome = harness.run(text_spec)
    keep, value, _ = plaintext_release(harness.files, parse_spec(text_spec), outcome.rules)
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)
