"""The dealer over real mTLS: typed requests, whitelist, sequence numbers, idempotent retries."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import torch

from mpc.config.party import TlsFiles
from mpc.dealer.service import DealerService, start_dealer
from mpc.engine.correlations import Request, local_components, party_stream
from mpc.engine.dealer_client import DealerClient, request_to_proto
from mpc.errors import DealerError
from mpc.proto import dealer_pb2, dealer_pb2_grpc
from mpc.transport.pki import make_dev_pki
from mpc.transport.tls import TlsIdentity, secure_channel

PARTIES = ["hospital_a", "hospital_b"]
SPEC = "ab" * 32


def ident(folder: Path, name: str) -> TlsIdentity:
    return TlsIdentity.load(TlsFiles(folder / "ca.pem", folder / f"{name}.pem",
                                     folder / f"{name}.key"))


@pytest.fixture()
def dealer(tmp_path: Path):  # type: ignore[no-untyped-def]
    make_dev_pki(tmp_path, PARTIES)
    service = DealerService("dealer")
    server, port = start_dealer(ident(tmp_path, "dealer"), "127.0.0.1:0", service)
    yield tmp_path, f"127.0.0.1:{port}", service
    server.stop(grace=None)


def clients(folder: Path, address: str, job: str = "job-00000001") -> list[DealerClient]:
    return [DealerClient(ident(folder, p), address, "dealer", job) for p in PARTIES]


def test_shares_from_seeds_and_corrections_form_triples(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    a, b = clients(folder, address)
    seeds = [a.join(SPEC, PARTIES, 0), b.join(SPEC, PARTIES, 1)]
    streams = [party_stream(s, "job-00000001", r) for r, s in enumerate(seeds)]
    req = Request(0, "additive_triple", (6,), (6,), "mul")
    p0, p1 = (local_components(req, s, r) for r, s in enumerate(streams))
    p0[-1] = a.correlation(req)
    assert torch.equal(p0[2] + p1[2], (p0[0] + p1[0]) * (p0[1] + p1[1]))


def test_retry_is_idempotent_and_sequence_is_enforced(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    b.join(SPEC, PARTIES, 1)
    first = a.correlation(Request(0, "square", (5,)))
    assert torch.equal(a.correlation(Request(0, "square", (5,))), first)  # a retry
    with pytest.raises(DealerError, match="differs from the one already served"):
        a.correlation(Request(0, "square", (6,)))
    with pytest.raises(DealerError, match="skips ahead"):
        a.correlation(Request(5, "square", (5,)))


def test_only_party_zero_gets_corrections(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    b.join(SPEC, PARTIES, 1)
    with pytest.raises(DealerError, match="PERMISSION_DENIED"):
        b.correlation(Request(0, "square", (5,)))


def test_operations_outside_the_whitelist_are_refused(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    a, _ = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    msg = request_to_proto("job-00000001", Request(0, "square", (5,)))
    msg.op = dealer_pb2.OP_UNSPECIFIED
    with secure_channel(ident(folder, "hospital_a"), address, "dealer") as channel, \
            pytest.raises(grpc.RpcError) as err:
        list(dealer_pb2_grpc.DealerStub(channel).Correlation(msg, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(DealerError, match="served for"):
        a.correlation(Request(0, "additive_triple", (2,), (2,), "conv2d"))


def test_joins_must_agree_and_leaving_erases_the_job(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, service = dealer
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    with pytest.raises(DealerError, match="different party list or spec"):
        b.join("cd" * 32, PARTIES, 1)
    b.join(SPEC, PARTIES, 1)
    assert service.active_jobs() == 1
    a.leave(0, 0)
    b.leave(1, 0)
    assert service.active_jobs() == 0
    with pytest.raises(DealerError, match="unknown job"):
        a.correlation(Request(0, "square", (5,)))
