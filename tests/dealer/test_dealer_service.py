"""The dealer over real mTLS: typed requests, whitelist, sequence numbers, idempotent retries,
and a job id served once (across restarts too)."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
import torch
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from mpc.audit.log import AuditLog, iter_entries
from mpc.config.party import TlsFiles
from mpc.dealer.service import DealerService, start_dealer
from mpc.engine.correlations import Request, conv_arguments, local_components, party_stream
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
        a.correlation(Request(0, "additive_triple", (2,), (2,), "conv3d"))
    # a convolution's arguments are typed fields, checked by the dealer too
    refused = [
        (Request(0, "additive_triple", (1, 1, 4, 4), (1, 1, 2, 2), "conv2d"),
         "conv2d: stride needs 2 values, got 0"),
        (Request(0, "additive_triple", (4,), (4,), "mul", padding=(1,)),
         "mul takes no convolution arguments, got padding"),
        (Request(0, "additive_triple", (1, 1, 100, 100), (1, 1, 1, 1), "conv_transpose2d",
                 **conv_arguments("conv_transpose2d", {"stride": 1024})),
         "conv_transpose2d request too large"),
    ]
    for req, message in refused:
        with pytest.raises(DealerError, match=f"INVALID_ARGUMENT: {message}"):
            a.correlation(req)


def test_convolution_triples_from_the_dealer(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    a, b = clients(folder, address)
    seeds = [a.join(SPEC, PARTIES, 0), b.join(SPEC, PARTIES, 1)]
    streams = [party_stream(s, "job-00000001", r) for r, s in enumerate(seeds)]
    kw = {"stride": (2, 1), "padding": 1, "output_padding": (1, 0), "groups": 2}
    req = Request(0, "additive_triple", (1, 4, 3, 3), (4, 1, 2, 2), "conv_transpose2d",
                  **conv_arguments("conv_transpose2d", kw))
    p0, p1 = (local_components(req, s, r) for r, s in enumerate(streams))
    p0[-1] = a.correlation(req)
    assert torch.equal(p0[2] + p1[2],
                       torch.conv_transpose2d(p0[0] + p1[0], p0[1] + p1[1], **kw))


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


# ---- a job id is served once ----------------------------------------------------------------
@pytest.fixture()
def audited(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A dealer with an audit log, and a way to restart it on the same log."""
    make_dev_pki(tmp_path, PARTIES)
    log_path = tmp_path / "dealer.jsonl"
    servers = []

    def start() -> tuple[str, DealerService]:
        audit = AuditLog.open(log_path, tmp_path / "dealer.sign.key", "dealer", "dealer")
        service = DealerService("dealer", audit=audit)
        server, port = start_dealer(ident(tmp_path, "dealer"), "127.0.0.1:0", service)
        servers.append(server)
        return f"127.0.0.1:{port}", service

    def stop() -> None:
        servers.pop().stop(grace=None)

    yield tmp_path, log_path, start, stop
    for server in servers:
        server.stop(grace=None)


def test_a_rank_joins_a_job_once(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    with pytest.raises(DealerError, match="FAILED_PRECONDITION.*joined job job-00000001 "
                                          "already: each party joins a job once"):
        a.join(SPEC, PARTIES, 0)
    b.join(SPEC, PARTIES, 1)  # the other rank still joins


def test_a_job_id_is_not_served_again_after_all_left(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, service = dealer
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    b.join(SPEC, PARTIES, 1)
    a.leave(0, 0)
    b.leave(1, 0)
    assert service.active_jobs() == 0
    for client, rank in ((a, 0), (b, 1)):
        with pytest.raises(DealerError, match="was served before: a job id is used once"):
            client.join(SPEC, PARTIES, rank)
    assert service.active_jobs() == 0  # no fresh state was made for the replay


def test_an_expired_job_id_is_not_served_again(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, service = dealer
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    service.job_ttl_s = 0.0  # the job expires at the next join
    with pytest.raises(DealerError, match="was served before"):
        b.join(SPEC, PARTIES, 1)
    with pytest.raises(DealerError, match="unknown job"):
        a.correlation(Request(0, "square", (5,)))


def test_used_job_ids_survive_a_dealer_restart(audited) -> None:  # type: ignore[no-untyped-def]
    folder, log_path, start, stop = audited
    address, _ = start()
    a, b = clients(folder, address, "job-finished")
    a.join(SPEC, PARTIES, 0)
    b.join(SPEC, PARTIES, 1)
    a.leave(0, 0)
    b.leave(1, 0)
    half, _ = clients(folder, address, "job-half-joined")
    half.join(SPEC, PARTIES, 0)
    stop()
    # A log line holding the event's name as text, and a torn line: read structurally.
    AuditLog.open(log_path, folder / "dealer.sign.key", "dealer", "dealer").append(
        "note", text='"job_joined_first" "job":"job-planted-1"')
    with log_path.open("ab") as fh:
        fh.write(b'{"event": "job_joined_first", "job": "job-torn-01"')
    address, service = start()
    refused = {"job-finished": [0, 1], "job-half-joined": [0, 1]}
    for job, ranks in refused.items():
        for client, rank in zip(clients(folder, address, job), ranks, strict=True):
            with pytest.raises(DealerError, match="was served before"):
                client.join(SPEC, PARTIES, rank)
    assert service.active_jobs() == 0
    for job in ("job-planted-1", "job-fresh-01"):  # never joined: served
        a, b = clients(folder, address, job)
        a.join(SPEC, PARTIES, 0)
        b.join(SPEC, PARTIES, 1)
    refusals = [e for e in iter_entries(log_path) if e["event"] == "join_refused"]
    assert len(refusals) == 4 and all("used once" in e["reason"] for e in refusals)


@pytest.mark.parametrize("bad", ['hospital_b"release_recorded', "hospital_b\n", "h" * 200])
def test_malformed_party_names_in_a_join_are_refused(dealer, bad: str) -> None:  # type: ignore[no-untyped-def]
    folder, address, service = dealer
    with secure_channel(ident(folder, "hospital_a"), address, "dealer") as channel, \
            pytest.raises(grpc.RpcError) as err:
        dealer_pb2_grpc.DealerStub(channel).Join(dealer_pb2.JoinRequest(
            job_id="job-00000001", spec_sha256=SPEC, parties=["hospital_a", bad], rank=0),
            timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed name" in err.value.details()
    assert service.active_jobs() == 0


def test_a_job_id_with_a_trailing_newline_is_refused(dealer) -> None:  # type: ignore[no-untyped-def]
    folder, address, _ = dealer
    client = DealerClient(ident(folder, "hospital_a"), address, "dealer", "job-00000001\n")
    with pytest.raises(DealerError, match="INVALID_ARGUMENT: malformed job id"):
        client.join(SPEC, PARTIES, 0)


def test_leave_hands_the_party_the_dealers_log_head(audited) -> None:  # type: ignore[no-untyped-def]
    folder, log_path, start, _ = audited
    address, _ = start()
    a, b = clients(folder, address)
    a.join(SPEC, PARTIES, 0)
    b.join(SPEC, PARTIES, 1)
    head = a.leave(0, 0)
    assert head is not None and head.member == "dealer"
    entry = list(iter_entries(log_path))[head.seq]
    assert entry["event"] == "party_left" and entry["party"] == "hospital_a"
    assert (entry["hash"], entry["sig"]) == (head.hash, head.sig)
    key = load_pem_public_key((folder / "dealer.sign.pub").read_bytes())
    key.verify(base64.b64decode(head.sig), bytes.fromhex(head.hash))  # type: ignore[union-attr]
    later = b.leave(1, 0)
    assert later is not None and later.seq == head.seq + 1
