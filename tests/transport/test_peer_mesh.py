"""The peer mesh on real mTLS sockets: ordering, chunking past gRPC's limit, identity checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from mpc.config.party import TlsFiles
from mpc.errors import PeerAbort, PeerUnreachable, ProtocolAbort
from mpc.transport.peer_mesh import PeerMesh
from mpc.transport.pki import make_dev_pki
from mpc.transport.tls import TlsIdentity

pytestmark = pytest.mark.integration  # gRPC servers on loopback sockets

NAMES = ["hospital_a", "hospital_b", "hospital_c"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    make_dev_pki(folder, [*NAMES, "outsider"])
    return folder


def ident(pki: Path, name: str) -> TlsIdentity:
    return TlsIdentity.load(TlsFiles(pki / "ca.pem", pki / f"{name}.pem", pki / f"{name}.key"))


def connect_all(ms: list[PeerMesh], endpoints: dict[int, str]) -> list[PeerMesh]:
    """Connect every mesh of one job at once (each waits for its lower ranks); on a failure
    close them all and raise it."""
    errors: list[BaseException] = []

    def connect(m: PeerMesh) -> None:
        try:
            m.connect(endpoints, timeout_s=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connect, args=(m,)) for m in ms]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if errors:
        for m in ms:
            m.close(grace_s=0.1)
        raise errors[0]
    return ms


def meshes(pki: Path, names: list[str], identities: list[str] | None = None,
           **kwargs) -> list[PeerMesh]:  # type: ignore[no-untyped-def]
    identities = identities or names
    ms = [PeerMesh("job-test-0001", r, names, ident(pki, identities[r]), **kwargs)
          for r in range(len(names))]
    endpoints = {r: m.listen() for r, m in enumerate(ms)}
    return connect_all(ms, endpoints)


def test_large_tensors_arrive_whole_and_in_order(pki: Path) -> None:
    a, b, c = meshes(pki, NAMES)
    big = torch.randint(-2**62, 2**62, (3_000_000,), dtype=torch.int64)  # 24 MB
    a.send_tensor(1, big, "x")
    a.send_tensor(1, torch.arange(5), "y")
    c.send_object(1, [torch.Size([2, 3])], "obj")
    assert torch.equal(b.recv_tensor(0, "x"), big)
    assert torch.equal(b.recv_tensor(0, "y"), torch.arange(5))
    assert b.recv_object(2, "obj") == [torch.Size([2, 3])]
    for m in (a, b, c):
        m.close(grace_s=1)


def test_out_of_step_messages_are_refused(pki: Path) -> None:
    a, b = meshes(pki, NAMES[:2])
    a.send_tensor(1, torch.arange(3), "all_reduce")
    with pytest.raises(ProtocolAbort, match="expected broadcast, got all_reduce"):
        b.recv_tensor(0, "broadcast")
    a.close(grace_s=0.1)
    b.close(grace_s=0.1)


def test_abort_reaches_the_peer_with_its_reason(pki: Path) -> None:
    a, b = meshes(pki, NAMES[:2])
    a.abort("dataset unreadable")
    with pytest.raises(PeerAbort, match="hospital_a aborted the job: dataset unreadable"):
        b.recv_tensor(0, "x")
    b.close(grace_s=0.1)


def test_a_certificate_outside_the_job_cannot_join(pki: Path) -> None:
    # rank 0 presents the outsider's (valid, same CA) certificate: rank 1 refuses it
    with pytest.raises(PeerUnreachable) as refused:
        meshes(pki, NAMES[:2], identities=["outsider", "hospital_b"])
    assert "cannot reach the job endpoint of hospital_b" in str(refused.value)
    assert "PERMISSION_DENIED" in str(refused.value)
    assert "certificate of 'outsider'" in str(refused.value)


def test_a_later_hello_cannot_change_the_recorded_fingerprint(pki: Path) -> None:
    """The accepting side records the fingerprint of the certificate the peer presented in
    the TLS handshake (it goes into the audit log); a forged HELLO after the handshake is a
    protocol violation, never a new fingerprint."""
    from mpc.transport.peer_mesh import Frame

    a, b = meshes(pki, NAMES[:2])  # rank 0 dials rank 1: b accepted a's stream
    presented = b.peer_fingerprints[0]
    assert presented == ident(pki, NAMES[0]).fingerprint
    a._outbox[1].put(Frame(kind=Frame.HELLO, job_id="job-test-0001", sender=0,
                           cert_sha256="f" * 64))
    with pytest.raises(ProtocolAbort, match="hospital_a sent a second HELLO"):
        b.recv_tensor(0, "x")
    assert b.peer_fingerprints[0] == presented
    a.close(grace_s=0.1)
    b.close(grace_s=0.1)
