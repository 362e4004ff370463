"""Peer links through each member's one port: a router per member on real mTLS sockets,
job meshes on local sockets behind them; what the router refuses, and with which words."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import torch

from mpc.errors import PeerAbort, PeerUnreachable
from mpc.proto import peer_pb2, peer_pb2_grpc
from mpc.transport.peer_mesh import PeerMesh
from mpc.transport.pki import make_dev_pki
from mpc.transport.router import (
    FINGERPRINT_KEY,
    NAME_KEY,
    ROLE_KEY,
    PeerRouter,
    Route,
    local_channel,
)
from mpc.transport.tls import SERVER_OPTIONS, TlsIdentity, bind_server, secure_channel
from tests.transport.test_peer_mesh import connect_all, ident

pytestmark = pytest.mark.integration  # gRPC servers on loopback and Unix sockets

NAMES = ("hospital_a", "hospital_b", "hospital_c")
JOB = "job-test-0001"
Frame = peer_pb2.PeerFrame


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    make_dev_pki(folder, [*NAMES, "outsider"])
    return folder


class Member:
    """A worker's port as far as peers see it: mTLS, and the router only."""

    def __init__(self, pki: Path, name: str) -> None:
        self.name = name
        self.identity = ident(pki, name)
        self.routes: dict[str, Route] = {}
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                                  options=SERVER_OPTIONS)
        self.server.add_generic_rpc_handlers((PeerRouter(name, self.routes.get).handler(),))
        self.address = f"127.0.0.1:{bind_server(self.server, self.identity, '127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)


@pytest.fixture()
def members(pki: Path) -> Iterator[dict[str, Member]]:
    made = {name: Member(pki, name) for name in NAMES}
    yield made
    for m in made.values():
        m.stop()


def routed_meshes(members: dict[str, Member], sockets: Path, names: tuple[str, ...] = NAMES
                  ) -> list[PeerMesh]:
    """One job's meshes, each on a local socket behind its member's router."""
    ms = []
    for r, name in enumerate(names):
        mesh = PeerMesh(JOB, r, names, members[name].identity)
        path = mesh.listen_local(str(sockets / f"job-{r}.sock"))
        members[name].routes[JOB] = Route(names, r, path)
        ms.append(mesh)
    endpoints = {r: members[name].address for r, name in enumerate(names)}
    return connect_all(ms, endpoints)


def test_a_job_talks_through_each_members_port(members: dict[str, Member],
                                               tmp_path: Path) -> None:
    a, b, c = routed_meshes(members, tmp_path)
    big = torch.randint(-2**62, 2**62, (3_000_000,), dtype=torch.int64)  # 24 MB, chunked
    a.send_tensor(1, big, "x")
    a.send_tensor(2, torch.arange(5), "y")
    b.send_object(0, ["back", 1], "obj")  # the dialled side answers on the relayed stream
    c.send_tensor(1, torch.arange(3), "z")
    assert torch.equal(b.recv_tensor(0, "x"), big)
    assert torch.equal(c.recv_tensor(0, "y"), torch.arange(5))
    assert a.recv_object(1, "obj") == ["back", 1]
    assert torch.equal(b.recv_tensor(2, "z"), torch.arange(3))
    # The relayed side records the certificate the router verified on the TLS stream.
    assert b.peer_fingerprints[0] == members["hospital_a"].identity.fingerprint
    assert c.peer_fingerprints == {0: members["hospital_a"].identity.fingerprint,
                                   1: members["hospital_b"].identity.fingerprint}
    for m in (a, b, c):
        m.close(grace_s=1)


def test_an_abort_crosses_the_relay(members: dict[str, Member], tmp_path: Path) -> None:
    a, b = routed_meshes(members, tmp_path, NAMES[:2])
    a.abort("dataset unreadable")
    with pytest.raises(PeerAbort, match="hospital_a aborted the job: dataset unreadable"):
        b.recv_tensor(0, "x")
    b.close(grace_s=0.1)


def test_the_dialled_side_ending_ends_the_dialler(members: dict[str, Member],
                                                  tmp_path: Path) -> None:
    a, b = routed_meshes(members, tmp_path, NAMES[:2])
    b.abort("policy changed")
    with pytest.raises(PeerAbort, match="hospital_b aborted the job: policy changed"):
        a.recv_tensor(1, "x")
    a.close(grace_s=0.1)


def hello(identity: TlsIdentity, job_id: str = JOB, sender: int = 0,
          fingerprint: str | None = None) -> Frame:
    return Frame(kind=Frame.HELLO, job_id=job_id, sender=sender,
                 cert_sha256=identity.fingerprint if fingerprint is None else fingerprint)


def refusal(caller: TlsIdentity, member: Member, first: Frame) -> tuple[grpc.StatusCode, str]:
    """Open a stream to `member`'s port as `caller`, send `first`: the refusal."""
    channel = secure_channel(caller, member.address, member.name)
    try:
        call = peer_pb2_grpc.PeerExchangeStub(channel).Exchange(iter([first]), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            list(call)
        return refused.value.code(), refused.value.details()  # type: ignore[attr-defined]
    finally:
        channel.close()


def test_the_router_refuses_what_is_not_a_party_of_a_ready_job(
        pki: Path, members: dict[str, Member], tmp_path: Path) -> None:
    b = members["hospital_b"]
    mesh = PeerMesh(JOB, 1, NAMES, b.identity)
    b.routes[JOB] = Route(NAMES, 1, mesh.listen_local(str(tmp_path / "job.sock")))
    a, c, outsider = (ident(pki, n) for n in ("hospital_a", "hospital_c", "outsider"))
    nf, denied = grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED
    # An unknown job and a job of others get the same answer: nothing about other jobs.
    assert refusal(a, b, hello(a, job_id="job-unknown-0001")) == (
        nf, "hospital_b has no job 'job-unknown-0001' of which hospital_a is a party")
    assert refusal(outsider, b, hello(outsider)) == (
        nf, f"hospital_b has no job '{JOB}' of which outsider is a party")
    # A party of the job that claims another's rank, or a rank that does not dial.
    assert refusal(c, b, hello(c, sender=0)) == (
        denied, "the HELLO claims rank 0; the certificate of 'hospital_c' belongs to "
                "another rank of this job")
    assert refusal(c, b, hello(c, sender=2)) == (denied, "rank 2 may not dial rank 1")
    assert refusal(a, b, hello(a, fingerprint="0" * 64)) == (
        denied, "the HELLO names another certificate than the one presented")
    assert refusal(a, b, Frame(kind=Frame.TENSOR, job_id=JOB)) == (
        denied, "the first frame must be HELLO")
    coordinator = ident(pki, "coordinator")
    assert refusal(coordinator, b, hello(coordinator)) == (
        denied, "certificate of 'coordinator' has role 'coordinator'; only parties open "
                "peer streams")
    # None of these reached the job: its rank 0 may still connect.
    assert not mesh._linked[0].is_set()
    mesh.close(grace_s=0.1)


def test_the_router_refuses_a_job_before_its_socket_exists(
        pki: Path, members: dict[str, Member]) -> None:
    b = members["hospital_b"]
    b.routes[JOB] = Route(NAMES, 1, None)
    a = ident(pki, "hospital_a")
    assert refusal(a, b, hello(a)) == (
        grpc.StatusCode.NOT_FOUND, f"job {JOB} at hospital_b does not take peer streams yet")


def test_a_job_process_gone_is_said_without_its_path(pki: Path,
                                                     members: dict[str, Member],
                                                     tmp_path: Path) -> None:
    b = members["hospital_b"]
    b.routes[JOB] = Route(NAMES, 1, str(tmp_path / "gone.sock"))
    a = ident(pki, "hospital_a")
    code, details = refusal(a, b, hello(a))
    assert (code, details) == (grpc.StatusCode.UNAVAILABLE,
                               "the job's process at hospital_b has ended")


def test_the_local_socket_wants_the_routers_identity(tmp_path: Path, pki: Path) -> None:
    """A call on the job's socket without the identity the router adds is refused."""
    mesh = PeerMesh(JOB, 1, NAMES, ident(pki, "hospital_b"))
    path = mesh.listen_local(str(tmp_path / "job.sock"))
    channel = local_channel(path)
    try:
        a = ident(pki, "hospital_a")
        call = peer_pb2_grpc.PeerExchangeStub(channel).Exchange(iter([hello(a)]), timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            list(call)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert refused.value.details() == (  # type: ignore[attr-defined]
            "the local call does not carry the caller's verified identity")
    finally:
        channel.close()
        mesh.close(grace_s=0.1)


def test_a_tcp_mesh_ignores_an_identity_in_metadata(pki: Path) -> None:
    """On TCP only the certificate counts: metadata naming a party changes nothing."""
    receiver = PeerMesh(JOB, 1, NAMES[:2], ident(pki, "hospital_b"))
    address = receiver.listen()
    outsider, a = ident(pki, "outsider"), ident(pki, "hospital_a")
    channel = secure_channel(outsider, address, "hospital_b")
    metadata = ((NAME_KEY, "hospital_a"), (ROLE_KEY, "party"), (FINGERPRINT_KEY, a.fingerprint))
    try:
        call = peer_pb2_grpc.PeerExchangeStub(channel).Exchange(
            iter([hello(a)]), timeout=10, metadata=metadata)
        with pytest.raises(grpc.RpcError) as refused:
            list(call)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert "certificate of 'outsider'" in refused.value.details()  # type: ignore[attr-defined]
    finally:
        channel.close()
        receiver.close(grace_s=0.1)


def test_an_unreachable_member_is_named_by_its_port(members: dict[str, Member]) -> None:
    b = members["hospital_b"]
    b.stop()
    a = PeerMesh(JOB, 0, NAMES[:2], members["hospital_a"].identity)
    try:
        with pytest.raises(PeerUnreachable, match="cannot reach the job endpoint of "
                                                  f"hospital_b at {b.address}"):
            a.connect({0: members["hospital_a"].address, 1: b.address}, timeout_s=1)
    finally:
        a.close(grace_s=0.1)
