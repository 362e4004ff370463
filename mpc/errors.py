"""One exception tree for the whole project.

Every error a user can see says *who* (party, file, field) and *what*; the
coordinator prints `str(error)` as it is, so messages are written for people.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Failure codes (common.proto `Failure.code`): the one vocabulary workers, job
    processes and the coordinator share, so the coordinator can tell a root cause from a
    failure that only echoes another party's. An exception's code is its class's `code`
    (`code_of`); the wire form is converted in mpc/transport/messages.py alone."""

    POLICY = "POLICY"  # a party's policy refuses the job (a job id used before, too)
    DATA = "DATA"
    CONFIG = "CONFIG"
    PEER = "PEER"  # a peer aborted (an echo)
    UNREACHABLE = "UNREACHABLE"
    LOST = "LOST"
    SILENT = "SILENT"
    TRANSPORT = "TRANSPORT"  # an echo
    DEALER = "DEALER"
    PROTOCOL = "PROTOCOL"
    ENGINE = "ENGINE"
    TIMEOUT = "TIMEOUT"
    INTERNAL = "INTERNAL"
    ABORTED = "ABORTED"  # the job was aborted (an echo)
    WORKER = "WORKER"  # the coordinator's call to a worker failed
    UNKNOWN = "UNKNOWN"  # a code from the wire this version does not know (or none)

    @property
    def echo(self) -> bool:
        """Whether a failure of this code only echoes another party's (the root cause is
        reported instead, if it arrives)."""
        return self in ECHOES


ECHOES = frozenset({Code.PEER, Code.TRANSPORT, Code.ABORTED})


def code_of(exc: BaseException) -> Code:
    """The failure code of an exception: its class's `code`; INTERNAL for anything that
    is not an MpcError (a bug, not a condition this project names)."""
    return type(exc).code if isinstance(exc, MpcError) else Code.INTERNAL


class MpcError(Exception):
    """Base class of every error this project raises on purpose."""

    code: Code = Code.INTERNAL  # unless a subclass names its condition


class ConfigError(MpcError):
    """A config, federation or use case file is missing, malformed or inconsistent."""

    code = Code.CONFIG

    def __init__(self, source: str, message: str, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {message}")


class PolicyRefused(MpcError):
    """A party's local policy does not allow this job."""

    code = Code.POLICY

    def __init__(self, party: str, reason: str) -> None:
        self.party = party
        self.reason = reason
        super().__init__(f"{party} refused the job: {reason}")


class DataError(MpcError):
    """A party's dataset cannot produce the table the spec asks for."""

    code = Code.DATA

    def __init__(
        self, party: str, dataset: str, message: str, column: str | None = None
    ) -> None:
        self.party = party
        self.dataset = dataset
        self.column = column
        where = f"dataset '{dataset}'" + (f", column '{column}'" if column else "")
        super().__init__(f"{party}: {where}: {message}")


class TransportError(MpcError):
    """A channel to a peer, the dealer or a worker failed or timed out."""

    code = Code.TRANSPORT


class PeerFault(TransportError):
    """Something went wrong at or with a peer; `party` names that peer."""

    code = Code.TRANSPORT
    party: str


class PeerAbort(PeerFault):
    """A peer told us it aborted the job."""

    code = Code.PEER

    def __init__(self, party: str, reason: str) -> None:
        self.party = party
        self.reason = reason
        super().__init__(f"{party} aborted the job: {reason}")


class PeerUnreachable(PeerFault):
    """This party could not reach a peer's job endpoint."""

    code = Code.UNREACHABLE

    def __init__(self, party: str, address: str, reporter: str, detail: str = "") -> None:
        self.party = party
        self.address = address
        super().__init__(
            f"{reporter} cannot reach the job endpoint of {party} at {address}{detail}")


class PeerLost(PeerFault):
    """An established channel to a peer broke (the peer crashed or the network failed)."""

    code = Code.LOST

    def __init__(self, party: str, reporter: str, detail: str = "") -> None:
        self.party = party
        super().__init__(f"{reporter} lost the connection to {party}{detail}")


class PeerSilent(PeerFault):
    """A peer sent nothing for longer than the configured peer timeout."""

    code = Code.SILENT

    def __init__(self, party: str, reporter: str, timeout_s: float) -> None:
        self.party = party
        super().__init__(f"{reporter} got no message from {party} within {timeout_s:g} s "
                         "(peer_timeout_s)")


class ProtocolAbort(MpcError):
    """The joint computation cannot continue (desync, bad message, refused operation)."""

    code = Code.PROTOCOL


class EngineError(MpcError):
    """The secure arithmetic engine was used in a way this project forbids."""

    code = Code.ENGINE


class DealerError(MpcError):
    """The dealer refused or could not serve a request."""

    code = Code.DEALER


class AuditError(MpcError):
    """An audit log cannot be written or verified."""

    code = Code.INTERNAL


class JobFailed(MpcError):
    """A job failed; `party` names where it failed first (None: the coordinator). The
    coordinator's own verdict: it is reported to people, never sent as a failure."""

    code = Code.INTERNAL

    def __init__(self, party: str | None, cause: str, job_id: str = "") -> None:
        self.party = party
        self.cause = cause
        self.job_id = job_id
        super().__init__(f"{party}: {cause}" if party else cause)


# The reason a job interrupted at the coordinator is aborted with, at every party and in logs.
INTERRUPTED = "interrupted at the coordinator"


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C at the coordinator, after the job was aborted at every party and logged as
    aborted. A KeyboardInterrupt still, so that whatever does not catch it stops."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id}: {INTERRUPTED}")
