"""Release delivery, a party's side: what it opens to whom once the rules were applied.

Recipient parties get the released values opened to them (and write the result files);
the coordinator gets this party's shares of them, with a nonce that salts their audit
digests (the coordinator computes the same digests on receipt). Nothing else is ever opened.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mpc.audit.digests import message_digest
from mpc.audit.events import AuditEvent
from mpc.config.spec import COORDINATOR
from mpc.transport.peer_mesh import WireEvent

if TYPE_CHECKING:
    from mpc.engine.secret import MpcContext
    from mpc.kinds import JobContext
    from mpc.protocols.aggregate import Released

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoordinatorShares:
    """This party's shares of (keep, value * keep) for the coordinator."""

    keep: torch.Tensor
    value: torch.Tensor
    nonce: bytes


def open_to_recipients(mpc: MpcContext, job: JobContext, released: Released,
                       results_dir: Path) -> dict[str, torch.Tensor]:
    """Open the release to every recipient party (writing the result where this party is
    one) and return this party's shares for the coordinator if it is a recipient. Runs
    inside the engine session: every party takes part in every opening."""
    from mpc.report.table import ReleasedTable, reconstruct, write_result

    spec = job.spec
    shares = {}
    if COORDINATOR in spec.recipients:
        shares = {"keep": mpc.release_share(released.keep),
                  "value": mpc.release_share(released.value)}
    for recipient in spec.recipients:
        if recipient == COORDINATOR:
            continue
        dst = spec.rank_of(recipient)
        job.audit.add(AuditEvent.RELEASE, recipient=recipient)
        keep = mpc.open_to(released.keep, dst)
        value = mpc.open_to(released.value, dst)
        if dst == job.rank:
            assert keep is not None and value is not None  # opened to this party
            kept, values = reconstruct([keep], [value], spec.released_size)
            result = ReleasedTable.post_process(spec, job.rules, job.job_id, kept, values)
            job.audit.add(AuditEvent.RESULT, **result.audit_fields())
            folder = write_result(result, results_dir)
            log.info("released result written to %s", folder)
    return shares


def to_coordinator(job: JobContext, shares: dict[str, torch.Tensor], coordinator: str,
                   wire: Any = None) -> CoordinatorShares | None:
    """Audit this party's release shares for the coordinator; None if it gets none."""
    if not shares:
        return None
    nonce = os.urandom(32)
    digests = {}
    for seq, (name, share) in enumerate(shares.items()):
        payload = share.numpy().astype("<i8").tobytes()
        digests[name] = message_digest(job.job_id, job.party, coordinator, seq, nonce,
                                       payload)
        if wire is not None:  # a test's capture of everything this party sends
            wire.record("coordinator", WireEvent("sent", coordinator, f"release/{name}", seq,
                                                 nonce, "tensor", "int64", tuple(share.shape),
                                                 payload))
    job.audit.add(AuditEvent.RELEASE, recipient=COORDINATOR, coordinator=coordinator,
                  digests=digests)
    return CoordinatorShares(shares["keep"], shares["value"], nonce)
