"""PeerChannel and DealerChannel: tags derived from steps and counters, checked on receipt;
typed receives; the in-process mesh behaves as PeerMesh does."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from mpc.engine.channels import DealerChannel, DealerLink, MeshChannel, PeerChannel
from mpc.errors import EngineError, PeerAbort, PeerSilent, ProtocolAbort
from mpc.testing.inprocess import InProcessNetwork, LocalDealer
from mpc.transport.peer_mesh import WireEvent


def pair(**kwargs: Any) -> tuple[MeshChannel, MeshChannel, list[WireEvent]]:
    events: list[WireEvent] = []
    net = InProcessNetwork("job-1", ["a", "b"], observers=[events.append], **kwargs)
    return MeshChannel(net.mesh(0)), MeshChannel(net.mesh(1)), events


def test_tags_come_from_the_step_and_a_counter_per_peer_and_step() -> None:
    a, b, events = pair()
    ring = a.step("overlap").step("ring")
    assert ring.namespace == "overlap/ring"
    ring.send_tensor(1, torch.tensor([1]))
    ring.send_tensor(1, torch.tensor([2]))
    a.step("rules").send_object(1, "digest")
    a.step("overlap").step("ring").send_tensor(1, torch.tensor([3]))  # the same step again
    theirs = b.step("overlap").step("ring")
    assert theirs.recv_tensor(0).tolist() == [1]
    assert theirs.recv_tensor(0).tolist() == [2]
    assert b.step("rules").recv_object(0) == "digest"
    assert theirs.recv_tensor(0).tolist() == [3]
    sent = [e.tag for e in events if e.direction == "sent"]
    assert sent == ["overlap/ring#0", "overlap/ring#1", "rules#0", "overlap/ring#2"]


def test_a_peer_out_of_step_is_a_protocol_abort_naming_it() -> None:
    a, b, _ = pair()
    a.step("points").send_tensor(1, torch.tensor([1]))
    with pytest.raises(ProtocolAbort, match="out of step with party a: expected rows#0, "
                                            "got points#0"):
        b.step("rows").recv_tensor(0)


def test_typed_receives_refuse_other_dtypes_and_shapes() -> None:
    a, b, _ = pair()
    step_a, step_b = a.step("list"), b.step("list")
    step_a.send_tensor(1, torch.zeros(64, dtype=torch.uint8))
    step_a.send_tensor(1, torch.zeros(64, dtype=torch.uint8))
    step_a.send_tensor(1, torch.zeros(3, dtype=torch.int64))
    assert step_b.recv_tensor(0, dtype=torch.uint8, shape=(64,)).shape == (64,)
    with pytest.raises(ProtocolAbort, match=r"party a sent torch.uint8\(64,\) at list#1, "
                                            r"expected torch.uint8\(96,\)"):
        step_b.recv_tensor(0, dtype=torch.uint8, shape=(96,))
    with pytest.raises(ProtocolAbort, match="party a sent torch.int64"):
        step_b.recv_tensor(0, dtype=torch.uint8)


def test_steps_are_named_and_the_root_sends_nothing() -> None:
    a, _, _ = pair()
    with pytest.raises(EngineError, match="named step"):
        a.send_object(1, "x")
    for bad in ("Ring", "a/b", "", "x#1", "x" * 49):
        with pytest.raises(EngineError):
            a.step(bad)
    with pytest.raises(ProtocolAbort, match="no peer of rank 0"):
        a.step("x").send_object(0, "to myself")


def test_objects_are_plain_values_only() -> None:
    a, b, _ = pair()
    a.step("o").send_object(1, [1, "two", (3.0, None), torch.Size([4])])
    assert b.step("o").recv_object(0) == [1, "two", (3.0, None), torch.Size([4])]
    with pytest.raises(ProtocolAbort, match="not sent over the network"):
        a.step("o").send_object(1, {"a": 1})  # type: ignore[arg-type]


def test_the_in_process_mesh_times_out_and_passes_aborts_on() -> None:
    net = InProcessNetwork("job-2", ["a", "b", "c"], recv_timeout_s=0.05)
    a, b, c = (net.mesh(r) for r in range(3))
    with pytest.raises(PeerSilent):
        b.recv_tensor(0, "x#0")
    a.abort("gave up")
    for _ in range(2):  # every later receive fails the same way
        with pytest.raises(PeerAbort, match="gave up"):
            c.recv_object(0, "x#0")


def test_channels_satisfy_their_protocols() -> None:
    a, _, _ = pair()
    dealer = LocalDealer("job-3", ["a", "b"])
    channels: list[PeerChannel] = [a, a.step("s")]
    links: list[DealerChannel] = [dealer.link(0), DealerLink(_Client(), 1, bytes(32))]
    assert all(c.rank == 0 and c.peers == [1] and c.parties == ["a", "b"] for c in channels)
    assert links[0].seed == dealer.seeds[0] and links[1].seed == bytes(32)


class _Client:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def submit_points(self, rank: int, list_name: str, points: bytes) -> None:
        self.calls.append(("submit", rank, list_name, points))

    def fetch_outcome(self, rank: int, part: str, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor:
        self.calls.append(("fetch", rank, part, widths, pad_to))
        return torch.zeros(1, dtype=torch.int64)


def test_dealer_link_fills_in_the_party_rank() -> None:
    client = _Client()
    link = DealerLink(client, 1, bytes(range(32)))
    link.submit_points("left", b"\x01" * 32)
    link.fetch_outcome("shares", (4, 3), 10)
    assert client.calls == [("submit", 1, "left", b"\x01" * 32),
                            ("fetch", 1, "shares", (4, 3), 10)]
    with pytest.raises(EngineError, match="32 bytes"):
        DealerLink(client, 0, b"short")
