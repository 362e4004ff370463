"""A party's phases in a job, spelled once: the job process reports them to its worker,
the worker relays them to the coordinator (worker.proto `JobEvent.Phase`), the
coordinator shows them to people.

`Phase` is the vocabulary every module uses; `to_proto`/`from_proto` convert it to and
from the wire enum (which stays as it is) and `label` is what people see. Two phases
never go on the wire: PENDING and SUBMITTED are the coordinator's own view before a
worker answers, EXITED is the worker's note that its job process ended unannounced.
"""

from __future__ import annotations

from enum import StrEnum

from mpc.proto import worker_pb2

_Wire = worker_pb2.JobEvent


class Phase(StrEnum):
    PENDING = "pending"  # coordinator: not submitted yet
    SUBMITTED = "submitted"  # coordinator: submitted, no answer yet
    ACCEPTED = "accepted"  # policy approved; job process starting
    LOCAL_TABLE = "local_table"  # local table computed
    READY = "ready"  # job process listening (endpoint and floors sent)
    CONNECTED = "connected"  # peer channels and dealer session up
    SHARING = "sharing"  # inputs secret-shared
    COMPUTING = "computing"  # joint computation running (protocol steps as detail)
    DISCLOSURE = "disclosure"  # disclosure control on shares
    RELEASED = "released"  # this party's release shares sent
    DONE = "done"
    FAILED = "failed"
    EXITED = "exited"  # worker only: the job process ended without saying why

    @property
    def label(self) -> str:
        """What people see of the phase."""
        return _LABELS[self]

    def to_proto(self) -> worker_pb2.JobEvent.Phase:
        """The wire value (worker_pb2.JobEvent.Phase); ValueError for a phase that is not
        on the wire."""
        try:
            return _TO_WIRE[self]
        except KeyError:
            raise ValueError(f"phase {self.value!r} does not go on the wire") from None

    @classmethod
    def from_proto(cls, value: int) -> Phase | None:
        """The phase of a wire value; None for PHASE_UNSPECIFIED or a value this version
        does not know (a newer or a broken worker), never an error."""
        return _FROM_WIRE.get(value)


# The phases a protocol reports itself (kinds' `phase` callback); any other step it names
# (blinding, matching) shows as the detail of COMPUTING.
PROTOCOL_PHASES = frozenset({Phase.SHARING, Phase.COMPUTING, Phase.DISCLOSURE})

_TO_WIRE: dict[Phase, worker_pb2.JobEvent.Phase] = {
    Phase.ACCEPTED: _Wire.ACCEPTED, Phase.LOCAL_TABLE: _Wire.LOCAL_TABLE,
    Phase.READY: _Wire.READY, Phase.CONNECTED: _Wire.CONNECTED,
    Phase.SHARING: _Wire.SHARING, Phase.COMPUTING: _Wire.COMPUTING,
    Phase.DISCLOSURE: _Wire.DISCLOSURE, Phase.RELEASED: _Wire.RELEASED,
    Phase.DONE: _Wire.DONE, Phase.FAILED: _Wire.FAILED,
}
_FROM_WIRE: dict[int, Phase] = {wire: phase for phase, wire in _TO_WIRE.items()}

_LABELS: dict[Phase, str] = {
    Phase.PENDING: "waiting", Phase.SUBMITTED: "submitted", Phase.ACCEPTED: "policy approved",
    Phase.LOCAL_TABLE: "local table", Phase.READY: "ready", Phase.CONNECTED: "connected",
    Phase.SHARING: "sharing", Phase.COMPUTING: "computing",
    Phase.DISCLOSURE: "disclosure control", Phase.RELEASED: "released", Phase.DONE: "done",
    Phase.FAILED: "FAILED", Phase.EXITED: "job process ended",
}


def label(phase: str) -> str:
    """The label of a phase, or the text itself if it is not one."""
    try:
        return Phase(phase).label
    except ValueError:
        return phase
