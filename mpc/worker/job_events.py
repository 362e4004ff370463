"""What the worker and its job process say to each other over their pipe.

Up (job process to worker): `Progress`, `Ready`, `ReleaseShares`, `Done`, `Failed`; the
worker's pump adds `Exited` when the pipe closes. Down (worker to job process): `StartOrder`
and `AbortOrder`. All are frozen dataclasses, pickled by multiprocessing; nothing else
crosses the pipe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpc.audit.log import Head
from mpc.config.rules import DisclosureRules
from mpc.errors import Code
from mpc.phases import Phase


@dataclass(frozen=True)
class Progress:
    phase: Phase
    detail: str = ""  # what the phase did, in words (never counts)


@dataclass(frozen=True)
class Ready:
    """The job process listens for its peers (relayed by the worker) on this local socket,
    and applies at least these floors."""

    socket: str
    floors: DisclosureRules


@dataclass(frozen=True)
class ReleaseShares:
    """This party's shares of (keep, value * keep) for the coordinator, with the nonce
    that salts their audit digests."""

    keep: np.ndarray
    value: np.ndarray
    nonce: bytes


@dataclass(frozen=True)
class Done:
    requests: int  # correlations this party consumed
    head: Head  # its audit log's head after the job's last entry


@dataclass(frozen=True)
class Failed:
    code: Code
    party: str  # where the failure arose (a peer's name for a peer's fault)
    message: str


@dataclass(frozen=True)
class Exited:
    """The pipe closed: the job process ended (after Done or Failed, or unannounced)."""


JobEvent = Progress | Ready | ReleaseShares | Done | Failed | Exited


def phase_of(event: JobEvent) -> Phase:
    """The phase an event reports to the coordinator."""
    if isinstance(event, Progress):
        return event.phase
    return {Ready: Phase.READY, ReleaseShares: Phase.RELEASED, Done: Phase.DONE,
            Failed: Phase.FAILED, Exited: Phase.EXITED}[type(event)]


@dataclass(frozen=True)
class StartOrder:
    """The coordinator's order to start: every rank's job endpoint (its worker's public
    address), the dealer, the rules."""

    endpoints: dict[int, str]
    dealer_address: str
    rules: DisclosureRules


@dataclass(frozen=True)
class AbortOrder:
    reason: str


Order = StartOrder | AbortOrder
