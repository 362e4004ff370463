"""One job, in its own process: local table, peer mesh, CrypTen session, protocol, release.

The worker starts this with multiprocessing's spawn (never fork: gRPC does not
survive it) and talks to it over a Pipe: the job sends phase events up, the
worker sends `start` and `abort` down. If the worker dies, the pipe closes and the
job exits at once, so no orphaned job keeps a peer waiting.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import traceback
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from mpc.audit.digests import build_sha256, file_sha256
from mpc.audit.events import DEALER_ROLE, AuditEvent
from mpc.audit.log import AuditLog
from mpc.audit.recorder import JobRecorder
from mpc.config.party import PartyConfig, raised_by
from mpc.config.rules import applied_rules
from mpc.config.spec import UseCaseSpec
from mpc.engine.channels import DealerLink, MeshChannel
from mpc.errors import MpcError, PeerFault, PolicyRefused, ProtocolAbort, TransportError, code_of
from mpc.kinds import JobContext, JobKind, LocalInput, kind_of
from mpc.phases import PROTOCOL_PHASES, Phase
from mpc.protocols.agreement import agree_on_rules
from mpc.transport.capture import recorder_from_env
from mpc.transport.peer_mesh import PeerMesh
from mpc.transport.tls import TlsIdentity
from mpc.transport.validate import head_problem
from mpc.worker.job_events import (
    AbortOrder,
    Done,
    Failed,
    JobEvent,
    Order,
    Progress,
    Ready,
    ReleaseShares,
    StartOrder,
)
from mpc.worker.release import open_to_recipients, to_coordinator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Joint:
    job: JobContext
    shares: dict[str, torch.Tensor]  # this party's release shares for the coordinator
    requests: int  # correlations this party consumed


class _Control:
    """Reads the worker's orders on a thread; exits the process if the worker goes away."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.starts: queue.Queue[StartOrder] = queue.Queue()
        self.mesh: PeerMesh | None = None
        self.audit: JobRecorder | None = None
        self._send_lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True, name="job-control").start()

    def emit(self, event: JobEvent) -> None:
        with self._send_lock:
            self.conn.send(event)

    def phase(self, name: str) -> None:
        """A protocol's progress: steps outside the worker's phases (blinding, matching)
        show as the computing phase's detail."""
        if name in PROTOCOL_PHASES:
            self.emit(Progress(Phase(name)))
        else:
            self.emit(Progress(Phase.COMPUTING, detail=name))

    def _run(self) -> None:
        try:
            while True:
                order: Order = self.conn.recv()
                if isinstance(order, StartOrder):
                    self.starts.put(order)
                elif isinstance(order, AbortOrder):
                    self._abort(order.reason)
        except (EOFError, OSError):
            os._exit(3)  # the worker is gone: nothing may continue without it

    def _abort(self, reason: str) -> None:
        self.flush_audit()  # what this party sent, so its peers' receipts pair in the audit
        if self.mesh is not None:
            self.mesh.abort(reason)
        os._exit(2)  # a blinding pool's processes follow: their task pipe closes

    def flush_audit(self) -> None:
        """Write the job's buffered audit entries; a failure to is logged, never raised."""
        if self.audit is not None:
            try:
                self.audit.flush()
            except Exception:  # noqa: BLE001 - the job ends either way
                log.exception("could not write the job's last audit entries")


def _fresh_global_generators() -> None:
    """A job forked from the warm forkserver (worker/warm.py) would otherwise start with the
    same torch and numpy global generator states as every other job."""
    import numpy as np

    torch.seed()
    np.random.seed()


def run_job(conn: Connection, config: PartyConfig, spec: UseCaseSpec, job_id: str,
            coordinator: str, peer_socket: str) -> None:
    """Entry point of the job process; `spec` is the one the worker's policy approved, and
    `peer_socket` the local socket its worker relays the job's peers to."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {config.name} job {job_id[:8]} %(message)s")
    _fresh_global_generators()
    control = _Control(conn)
    try:
        _run(control, config, spec, job_id, coordinator, peer_socket)
    except BaseException as exc:  # report every failure; the worker decides what to do
        if not isinstance(exc, MpcError):
            log.error("job failed:\n%s", traceback.format_exc())
        party = exc.party if isinstance(exc, PeerFault) else config.name
        reason = str(exc) if isinstance(exc, MpcError) else f"internal error ({type(exc).__name__})"
        log.warning("job failed (%s): %s", code_of(exc), exc)
        # The messages this party sent before the failure: without them the audit would read
        # its peers' receipts as messages nobody sent.
        control.flush_audit()
        # Report first, then tear down: closing channels to a dead peer can take seconds.
        control.emit(Failed(code_of(exc), party, reason))
        if control.mesh is not None:
            control.mesh.abort(reason if party == config.name else f"{party}: {exc}")
    # Pipe sends are synchronous, so the worker has every event. Leave now: gRPC's
    # threads do not take part in a normal interpreter shutdown gracefully (the blinding
    # pool, if any, was closed by _joint).
    conn.close()
    os._exit(0)


def _run(control: _Control, config: PartyConfig, spec: UseCaseSpec, job_id: str,
         coordinator: str, peer_socket: str) -> None:
    from mpc.worker.policy import floors

    rank = spec.rank_of(config.name)
    kind = kind_of(spec.job)
    local = kind.local_input(spec, config)
    control.emit(Progress(Phase.LOCAL_TABLE, detail=local.detail))

    identity = TlsIdentity.load(config.tls, expected_name=config.name, source=config.source)
    audit = JobRecorder(AuditLog.open(config.audit_log, config.signing_key, config.name,
                                      "party"), job_id, config.name)
    control.audit = audit
    observers: list[Any] = [audit.observe]
    wire = recorder_from_env(config.name)
    if wire is not None:
        observers.append(wire)
    mesh = PeerMesh(job_id, rank, spec.parties, identity,
                    recv_timeout_s=config.limits.peer_timeout_s,
                    max_message_bytes=config.limits.max_message_bytes,
                    observers=observers)
    control.mesh = mesh
    my_floors = floors(config, spec)
    # No port of its own: peers reach the job through the worker's port (its router).
    control.emit(Ready(mesh.listen_local(peer_socket), my_floors))

    try:  # as long as the worker lets the job live: a slow party may keep the others waiting
        order = control.starts.get(timeout=config.job_timeout_s)
    except queue.Empty:
        raise TransportError(f"no start order within {config.job_timeout_s:.0f} s "
                             f"{raised_by('job_timeout_s')}") from None
    if not order.rules.at_least_as_strict_as(applied_rules(spec.disclosure, [my_floors])):
        raise PolicyRefused(config.name, "the coordinator's disclosure rules are weaker than "
                                         "the spec with this party's floors")
    if spec.noise is not None and order.rules.min_contributors > 1:
        raise PolicyRefused(config.name, "the contributor rule cannot be applied to a noisy "
                                         "release; the job is refused rather than drop it")
    log.info("connecting to %d peers", len(order.endpoints) - 1)
    mesh.connect(order.endpoints, timeout_s=config.connect_timeout_s)
    agreed = agree_on_rules(MeshChannel(mesh), spec.sha256, order.rules)
    fingerprints = {spec.parties[r]: fp for r, fp in mesh.peer_fingerprints.items()}
    fingerprints[config.name] = identity.fingerprint
    audit.add(AuditEvent.SESSION_START, spec_sha256=spec.sha256, parties=list(spec.parties),
              rank=rank, coordinator=coordinator, certificates=fingerprints, dealer=config.dealer,
              rules=asdict(order.rules), rules_sha256=agreed, build_sha256=build_sha256(),
              policy_sha256=file_sha256(Path(config.source)))
    audit.commit_inputs(local.committed,
                        config.datasets[spec.dataset_of(config.name)].definition(),
                        config.openings)
    try:
        joint = _joint(control, config, spec, kind, local, identity, mesh, order, audit)
        handed = to_coordinator(joint.job, joint.shares, coordinator, wire)
        if handed is not None:
            control.emit(ReleaseShares(handed.keep.numpy(), handed.value.numpy(),
                                       handed.nonce))
        audit.add(AuditEvent.JOB_END, dealer_requests=joint.requests)
        _exchange_heads(mesh, audit)
    finally:
        audit.flush()
    mesh.close()
    control.emit(Done(joint.requests, audit.head()))


def _joint(control: _Control, config: PartyConfig, spec: UseCaseSpec, kind: JobKind,
           local: LocalInput, identity: TlsIdentity, mesh: PeerMesh, order: StartOrder,
           audit: JobRecorder) -> _Joint:
    """The joint computation with the dealer, through the job's kind."""
    from mpc.engine.correlations import party_stream
    from mpc.engine.dealer_client import DealerClient
    from mpc.engine.session import EngineSession
    from mpc.protocols.blind import BlindingPool
    from mpc.protocols.linkage import LinkIO

    dealer = DealerClient(identity, order.dealer_address, config.dealer, mesh.job_id)
    pool = BlindingPool()  # started only if a list is large enough; closed below
    try:
        seed = dealer.join(spec.sha256, spec.parties, mesh.rank)
        control.emit(Progress(Phase.CONNECTED))
        job = JobContext(spec=spec, rules=order.rules, party=config.name, rank=mesh.rank,
                         link=LinkIO(MeshChannel(mesh), DealerLink(dealer, mesh.rank, seed),
                                     pool),
                         audit=audit, phase=control.phase)
        session = EngineSession(mesh, party_stream(seed, mesh.job_id, mesh.rank),
                                dealer.correlation if mesh.rank == 0 else None)
        prepared = kind.prepare(job, local)  # before the session: blinding, noise
        with session as mpc:
            released = kind.compute(mpc, job, prepared)
            shares = open_to_recipients(mpc, job, released,
                                        config.results_dir or config.audit_log.parent)
        ledger = session.provider.ledger
        audit.add(AuditEvent.DEALER_LEDGER,
                  requests=[[e.seq, e.op, list(e.shape)] for e in ledger])
        dealer_head = dealer.leave(mesh.rank, len(ledger))
        if dealer_head is not None:  # pin the dealer's log: it cannot drop this job later
            audit.add(AuditEvent.MEMBER_HEAD, member_role=DEALER_ROLE,
                      head=dealer_head.as_dict())
    finally:
        pool.close()
        dealer.close()
    return _Joint(job, shares, len(ledger))


def _exchange_heads(mesh: PeerMesh, audit: JobRecorder) -> None:
    """Tell every peer where this party's log stands, and record where theirs stand, so
    that a log cut short later is caught by the others."""
    mine = audit.head()
    for r in mesh.peers:
        mesh.send_object(r, [mine.member, mine.seq, mine.hash, mine.sig], "audit/head")
    heads = []
    for r in mesh.peers:
        head = mesh.recv_object(r, "audit/head")
        if not (isinstance(head, list) and len(head) == 4
                and isinstance(head[1], int) and not isinstance(head[1], bool)
                and all(isinstance(x, str) for x in (head[0], head[2], head[3]))
                and head_problem(*head) is None):
            raise ProtocolAbort(f"party {mesh.parties[r]} sent a malformed log head")
        member, seq, digest, sig = head
        if member != mesh.parties[r]:
            raise ProtocolAbort(f"party {mesh.parties[r]} sent the log head of another member")
        heads.append({"member": member, "seq": seq, "hash": digest, "sig": sig})
    audit.add(AuditEvent.PEER_HEADS, heads=heads)
