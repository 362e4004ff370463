"""Rounds as the engine counts them: one per wait that follows this party's own sending;
a secure job over real processes with latency on every link gives the same result as
without, and every party counts the same rounds."""

from __future__ import annotations

from typing import Any

import torch

from mpc.engine.rounds import CountingMesh, operation
from mpc.testing import run_local_parties


class Recorder:
    job_id, rank, parties, peers = "job", 0, ["a", "b", "c"], [1, 2]

    def send_tensor(self, dst: int, tensor: torch.Tensor, tag: str) -> None: ...

    def recv_tensor(self, src: int, tag: str) -> torch.Tensor:
        return torch.zeros(1)

    def send_object(self, dst: int, obj: Any, tag: str) -> None: ...

    def recv_object(self, src: int, tag: str) -> Any:
        return None


def test_a_round_is_a_wait_after_sending() -> None:
    mesh = CountingMesh(Recorder())
    t = torch.zeros(1)
    mesh.recv_tensor(1, "hello#0")  # the first wait: round 1
    mesh.send_tensor(1, t, "open#0")
    mesh.send_tensor(2, t, "open#0")
    mesh.recv_tensor(1, "open#0")  # round 2: an exchange with every peer
    mesh.recv_tensor(2, "open#0")
    mesh.send_object(1, 1, "ack")
    mesh.recv_object(2, "ack")  # round 3
    assert mesh.count.rounds == 3
    assert mesh.count.by_operation == {"hello": 1, "open": 1, "ack": 1}
    assert operation("agg/sum#12") == "agg/sum"


def compare(ctx: Any, threshold: int) -> Any:
    from mpc.config.spec import DisclosureRules
    from mpc.protocols.aggregate import aggregate

    values = torch.tensor([3, 12, 0, 40]) * (ctx.rank + 1)
    released = aggregate(ctx, values, values, DisclosureRules(min_cell=threshold))
    return ctx.open_to(released.value, 0)


def test_latency_on_every_link_changes_no_result_and_parties_agree_on_rounds() -> None:
    plain: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    fast = run_local_parties(compare, world_size=3, args=(10,), rounds=plain)
    delayed = run_local_parties(compare, world_size=3, args=(10,), rtt_ms=20, rounds=slow)
    assert torch.equal(fast[0], delayed[0])
    assert torch.equal(fast[0], torch.tensor([18, 72, 0, 240]) * torch.tensor([1, 1, 0, 1]))
    counts = [r["rounds"] for r in plain]
    assert counts[0] > 2 and len(set(counts)) == 1, plain  # the same program at every party
    assert [r["rounds"] for r in slow] == counts  # latency changes time, not rounds
    assert plain[0]["dealer_round_trips"] > 0 and plain[1]["dealer_round_trips"] == 0
