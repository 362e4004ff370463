"""Counting a party's sequential communication rounds, for benchmarks over a WAN.

On a link with round-trip time RTT a job costs at least rounds x RTT / 2 more than on
loopback, whatever its bandwidth, so rounds are what latency multiplies. A round here is
a wait for a peer that follows this party's own sending: the first receive after one or
more sends (or the very first receive) starts one; receives in a row, as in an exchange
with every peer, belong to the same round. Each round is booked to the operation of the
message it waited for (its tag without the message counter), so a benchmark can say
which steps cost the rounds. Round trips to the dealer are counted apart.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mpc.engine.channels import Mesh


def operation(tag: str) -> str:
    """A message's operation: its tag without the counter a channel appends (`#3`)."""
    return tag.split("#", 1)[0]


@dataclass
class RoundCount:
    rounds: int = 0
    by_operation: collections.Counter[str] = field(default_factory=collections.Counter)
    dealer_round_trips: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "by_operation": dict(self.by_operation),
                "dealer_round_trips": self.dealer_round_trips}


class CountingMesh:
    """A Mesh that counts rounds and hands every call to the mesh it wraps."""

    def __init__(self, mesh: Mesh) -> None:
        self._mesh = mesh
        self.job_id = mesh.job_id
        self.rank = mesh.rank
        self.parties = mesh.parties
        self.peers = mesh.peers
        self.count = RoundCount()
        self._sent_since_receive = True  # the first receive starts a round

    def _receiving(self, tag: str) -> None:
        if self._sent_since_receive:
            self.count.rounds += 1
            self.count.by_operation[operation(tag)] += 1
            self._sent_since_receive = False

    def send_tensor(self, dst: int, tensor: torch.Tensor, tag: str) -> None:
        self._sent_since_receive = True
        self._mesh.send_tensor(dst, tensor, tag)

    def recv_tensor(self, src: int, tag: str) -> torch.Tensor:
        self._receiving(tag)
        return self._mesh.recv_tensor(src, tag)

    def send_object(self, dst: int, obj: Any, tag: str) -> None:
        self._sent_since_receive = True
        self._mesh.send_object(dst, obj, tag)

    def recv_object(self, src: int, tag: str) -> Any:
        self._receiving(tag)
        return self._mesh.recv_object(src, tag)

    def counting_dealer(self, fetch: Callable[..., Any]) -> Callable[..., Any]:
        """`fetch` (a dealer call) that also counts its round trips."""
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count.dealer_round_trips += 1
            return fetch(*args, **kwargs)
        return counted
