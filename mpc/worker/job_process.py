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
import sys
import threading
import traceback
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from mpc.audit.digests import build_sha256, file_sha256, message_digest
from mpc.audit.events import DEALER_ROLE, MEMBER_HEAD
from mpc.audit.log import AuditLog
from mpc.audit.recorder import JobRecorder
from mpc.config.party import PartyConfig
from mpc.config.spec import COORDINATOR, DisclosureRules, UseCaseSpec, parse_spec
from mpc.errors import (
    Code,
    ConfigError,
    DataError,
    DealerError,
    EngineError,
    MpcError,
    PeerAbort,
    PeerFault,
    PeerLost,
    PeerSilent,
    PeerUnreachable,
    PolicyRefused,
    ProtocolAbort,
    TransportError,
)
from mpc.protocols.agreement import agree_on_rules
from mpc.transport.capture import recorder_from_env
from mpc.transport.peer_mesh import PeerMesh, WireEvent
from mpc.transport.tls import TlsIdentity
from mpc.transport.validate import head_problem
from mpc.worker.kinds import LocalInput, joint, local_input

log = logging.getLogger(__name__)
START_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class StartOrder:
    endpoints: dict[int, str]
    dealer_address: str
    rules: DisclosureRules


def failure_code(exc: BaseException) -> str:
    for cls, code in ((PolicyRefused, Code.POLICY), (DataError, Code.DATA),
                      (ConfigError, Code.CONFIG), (PeerAbort, Code.PEER),
                      (PeerUnreachable, Code.UNREACHABLE), (PeerLost, Code.LOST),
                      (PeerSilent, Code.SILENT), (TransportError, Code.TRANSPORT),
                      (DealerError, Code.DEALER), (ProtocolAbort, Code.PROTOCOL),
                      (EngineError, Code.ENGINE)):
        if isinstance(exc, cls):
            return code
    return Code.INTERNAL


class _Control:
    """Reads the worker's orders on a thread; exits the process if the worker goes away."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.starts: queue.Queue[StartOrder] = queue.Queue()
        self.mesh: PeerMesh | None = None
        self._send_lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True, name="job-control").start()

    def emit(self, phase: str, **fields: Any) -> None:
        with self._send_lock:
            self.conn.send({"phase": phase, **fields})

    def _run(self) -> None:
        try:
            while True:
                kind, payload = self.conn.recv()
                if kind == "start":
                    self.starts.put(payload)
                elif kind == "abort":
                    self._abort(str(payload))
        except (EOFError, OSError):
            os._exit(3)  # the worker is gone: nothing may continue without it

    def _abort(self, reason: str) -> None:
        if self.mesh is not None:
            self.mesh.abort(reason)
        os._exit(2)


def run_job(conn: Connection, config: PartyConfig, spec_bytes: bytes, job_id: str,
            coordinator: str) -> None:
    """Entry point of the job process."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {config.name} job {job_id[:8]} %(message)s")
    control = _Control(conn)
    try:
        _run(control, config, parse_spec(spec_bytes, "submitted spec"), job_id, coordinator)
    except BaseException as exc:  # report every failure; the worker decides what to do
        if not isinstance(exc, MpcError):
            log.error("job failed:\n%s", traceback.format_exc())
        party = exc.party if isinstance(exc, PeerFault) else config.name
        reason = str(exc) if isinstance(exc, MpcError) else f"internal error ({type(exc).__name__})"
        log.warning("job failed (%s): %s", failure_code(exc), exc)
        # Report first, then tear down: closing channels to a dead peer can take seconds.
        control.emit("failed", code=failure_code(exc), party=party, message=reason)
        if control.mesh is not None:
            control.mesh.abort(reason if party == config.name else f"{party}: {exc}")
    # Pipe sends are synchronous, so the worker has every event. Leave now: gRPC's
    # threads do not take part in a normal interpreter shutdown gracefully (so close
    # what atexit would have: the blinding pool).
    blind = sys.modules.get("mpc.protocols.blind")
    if blind is not None:
        blind.close_pool()
    conn.close()
    os._exit(0)


def _run(control: _Control, config: PartyConfig, spec: UseCaseSpec, job_id: str,
         coordinator: str) -> None:
    from mpc.worker.policy import floors

    rank = spec.rank_of(config.name)
    local = local_input(spec, config)
    control.emit("local_table", detail=local.detail)

    identity = TlsIdentity.load(config.tls, expected_name=config.name, source=config.source)
    audit = JobRecorder(AuditLog.open(config.audit_log, config.signing_key, config.name,
                                      "party"), job_id, config.name)
    observers: list[Any] = [audit.observe]
    wire = recorder_from_env(config.name)
    if wire is not None:
        observers.append(wire)
    mesh = PeerMesh(job_id, rank, spec.parties, identity, config.peer_host,
                    advertise_host=config.peer_advertise,
                    recv_timeout_s=config.limits.peer_timeout_s,
                    max_message_bytes=config.limits.max_message_bytes,
                    observers=observers)
    control.mesh = mesh
    my_floors = floors(config, spec)
    control.emit("ready", endpoint=mesh.listen(), floors=my_floors)

    try:
        order = control.starts.get(timeout=START_TIMEOUT_S)
    except queue.Empty:
        raise TransportError(f"no start order within {START_TIMEOUT_S:.0f} s") from None
    if not order.rules.at_least_as_strict_as(spec.disclosure.with_floors(my_floors)):
        raise PolicyRefused(config.name, "the coordinator's disclosure rules are weaker than "
                                         "the spec with this party's floors")
    if spec.noise is not None and order.rules.min_contributors > 1:
        raise PolicyRefused(config.name, "the contributor rule cannot be applied to a noisy "
                                         "release; the job is refused rather than drop it")
    log.info("connecting to %d peers", len(order.endpoints) - 1)
    mesh.connect(order.endpoints, timeout_s=config.connect_timeout_s)
    agreed = agree_on_rules(mesh, job_id, spec.sha256, order.rules)
    fingerprints = {spec.parties[r]: fp for r, fp in mesh.peer_fingerprints.items()}
    fingerprints[config.name] = identity.fingerprint
    audit.add("session_start", spec_sha256=spec.sha256, parties=list(spec.parties), rank=rank,
              coordinator=coordinator, certificates=fingerprints, dealer=config.dealer,
              rules=asdict(order.rules), rules_sha256=agreed, build_sha256=build_sha256(),
              policy_sha256=file_sha256(Path(config.source)))
    audit.commit_inputs(local.committed,
                        config.datasets[spec.dataset_of(config.name)].definition(),
                        config.openings)
    try:
        shares, requests = _compute(control, config, spec, job_id, rank, identity, mesh, order,
                                    local, audit)
        _release(control, spec, job_id, shares, coordinator, audit, wire)
        audit.add("job_end", dealer_requests=requests)
        _exchange_heads(mesh, audit)
    finally:
        audit.flush()
    mesh.close()
    control.emit("done", requests=requests, head=audit.head())


def _compute(control: _Control, config: PartyConfig, spec: UseCaseSpec, job_id: str, rank: int,
             identity: TlsIdentity, mesh: PeerMesh, order: StartOrder, local: LocalInput,
             audit: JobRecorder) -> tuple[dict[str, torch.Tensor], int]:
    """The joint computation; this party's release shares for the coordinator (if it is a
    recipient) and the number of correlations consumed."""
    from mpc.engine.correlations import party_stream
    from mpc.engine.dealer_client import DealerClient
    from mpc.engine.session import EngineSession
    from mpc.protocols.linkage import LinkIO
    from mpc.report.table import ReleasedTable, reconstruct, write_result

    def phase(name: str) -> None:
        # Protocol steps outside the worker's phases (blinding, matching) show as detail.
        if name in ("sharing", "computing", "disclosure"):
            control.emit(name)
        else:
            control.emit("computing", detail=name)

    dealer = DealerClient(identity, order.dealer_address, config.dealer, job_id)
    try:
        seed = dealer.join(spec.sha256, spec.parties, rank)
        control.emit("connected")
        session = EngineSession(mesh, party_stream(seed, job_id, rank),
                                dealer.correlation if rank == 0 else None)
        io = LinkIO(mesh, dealer, seed, job_id, rank, list(spec.parties))

        def finish(ctx: Any, released: Any) -> dict[str, torch.Tensor]:
            """Shares for the coordinator; openings to recipient parties."""
            shares = {}
            if COORDINATOR in spec.recipients:
                shares = {"keep": ctx.release_share(released.keep),
                          "value": ctx.release_share(released.value)}
            for recipient in spec.recipients:
                if recipient == COORDINATOR:
                    continue
                dst = spec.rank_of(recipient)
                audit.add("release", recipient=recipient)
                keep = ctx.open_to(released.keep, dst)
                value = ctx.open_to(released.value, dst)
                if dst == rank:
                    kept, values = reconstruct([keep], [value], spec.released_size)
                    result = ReleasedTable.post_process(spec, order.rules, job_id, kept, values)
                    audit.add("result", **result.audit_fields())
                    folder = write_result(result, config.results_dir or config.audit_log.parent)
                    log.info("released result written to %s", folder)
            return shares

        shares = joint(spec, local, io, session, order.rules, phase, finish)
        ledger = session.provider.ledger
        audit.add("dealer_ledger", requests=[[e.seq, e.op, list(e.shape)] for e in ledger])
        dealer_head = dealer.leave(rank, len(ledger))
        if dealer_head is not None:  # pin the dealer's log: it cannot drop this job later
            audit.add(MEMBER_HEAD, member_role=DEALER_ROLE, head=dealer_head.as_dict())
    finally:
        dealer.close()
    return shares, len(ledger)


def _release(control: _Control, spec: UseCaseSpec, job_id: str, shares: dict[str, torch.Tensor],
             coordinator: str, audit: JobRecorder, wire: Any) -> None:
    """Hand the coordinator this party's release shares, with the nonce that salts their
    audit digests (the coordinator computes the same digests on receipt)."""
    if not shares:
        return
    nonce = os.urandom(32)
    digests = {}
    for seq, (name, share) in enumerate(shares.items()):
        payload = share.numpy().astype("<i8").tobytes()
        digests[name] = message_digest(job_id, audit.party, coordinator, seq, nonce, payload)
        if wire is not None:
            wire.record("coordinator", WireEvent("sent", coordinator, f"release/{name}", seq,
                                                 nonce, "tensor", "int64", tuple(share.shape),
                                                 payload))
    audit.add("release", recipient=COORDINATOR, coordinator=coordinator, digests=digests)
    control.emit("released", keep=shares["keep"].numpy(), value=shares["value"].numpy(),
                 nonce=nonce)


def _exchange_heads(mesh: PeerMesh, audit: JobRecorder) -> None:
    """Tell every peer where this party's log stands, and record where theirs stand, so
    that a log cut short later is caught by the others."""
    mine = audit.head()
    for r in mesh.peers:
        mesh.send_object(r, [mine.member, mine.seq, mine.hash, mine.sig], "audit/head")
    heads = []
    for r in mesh.peers:
        head = mesh.recv_object(r, "audit/head")
        if not (isinstance(head, list) and len(head) == 4 and isinstance(head[1], int)
                and all(isinstance(x, str) for x in (head[0], head[2], head[3]))
                and head_problem(*head) is None):
            raise ProtocolAbort(f"party {mesh.parties[r]} sent a malformed log head")
        member, seq, digest, sig = head
        if member != mesh.parties[r]:
            raise ProtocolAbort(f"party {mesh.parties[r]} sent the log head of another member")
        heads.append({"member": member, "seq": seq, "hash": digest, "sig": sig})
    audit.add("peer_heads", heads=heads)
