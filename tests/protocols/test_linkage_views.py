"""What each role of a linkage receives. The dealer: curve points, sizes and counters,
nothing else. A data party: shares of matched rows that do not depend on which of its
records matched (two memberships of the same size give the same distributions)."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import torch

from mpc.config.spec import DisclosureRules
from mpc.dealer.service import DealerService
from mpc.engine.rng import new_seed
from mpc.proto import dealer_pb2
from mpc.protocols.blind import _sodium, hash_to_points
from mpc.protocols.linking import link_outcome, row_masks
from mpc.testing import run_local_parties

IDS = {0: [f"p{i}" for i in range(0, 300)], 1: [f"p{i}" for i in range(200, 400)]}
CELLS = {0: np.arange(300) % 4, 1: np.arange(200) % 3}


def linkage_program(ctx: Any, io: Any) -> dict[str, Any]:
    from mpc.protocols.linkage import cross_table, linkage_shares

    shares = linkage_shares(io, IDS[io.rank], CELLS[io.rank], (4, 3), 500)
    released = cross_table(ctx, shares, DisclosureRules(min_cell=1, suppress_zero=False))
    return {"value": ctx.open_to(released.value, 0), "linked": shares.linked}


class RecordingDealer(DealerService):
    """The dealer, noting every request it receives."""

    def __init__(self) -> None:
        super().__init__("dealer")
        self.received: list[Any] = []

    def Join(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.received.append(request)
        return super().Join(request, context)

    def Correlation(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.received.append(request)
        return super().Correlation(request, context)

    def SubmitPoints(self, request_iterator: Any, context: Any) -> Any:  # noqa: N802
        def record():  # type: ignore[no-untyped-def]
            for chunk in request_iterator:
                self.received.append(chunk)
                yield chunk
        return super().SubmitPoints(record(), context)

    def FetchOutcome(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.received.append(request)
        return super().FetchOutcome(request, context)

    def Leave(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.received.append(request)
        return super().Leave(request, context)


def test_linkage_is_correct_and_the_dealer_sees_only_points_and_sizes() -> None:
    dealer = RecordingDealer()
    results = run_local_parties(linkage_program, 2, with_io=True, dealer=dealer)
    # Correct: the cross table of persons p200..p299 and their cells.
    expected = np.zeros((4, 3), dtype=np.int64)
    for person in range(200, 300):
        expected[person % 4, (person - 200) % 3] += 1
    assert results[0]["linked"] == results[1]["linked"] == 100
    np.testing.assert_array_equal(results[0]["value"].numpy(),
                                  np.append(expected.flatten(), 100))
    # The dealer: joins, correlation sizes, fetch parameters, leaves, and points.
    kinds = {type(m) for m in dealer.received}
    assert kinds <= {dealer_pb2.JoinRequest, dealer_pb2.CorrelationRequest,
                     dealer_pb2.PointsChunk, dealer_pb2.FetchRequest, dealer_pb2.LeaveRequest}
    points = b"".join(m.points for m in dealer.received if isinstance(m, dealer_pb2.PointsChunk))
    assert len(points) == 2 * 500 * 32  # two padded lists, nothing more
    sodium = _sodium()
    plain = set()
    for job in {m.job_id for m in dealer.received if isinstance(m, dealer_pb2.JoinRequest)}:
        blob = hash_to_points(job, [*IDS[0], *IDS[1]])
        plain |= {blob[k: k + 32] for k in range(0, len(blob), 32)}
    for k in range(0, len(points), 32):
        point = points[k: k + 32]
        assert sodium.crypto_core_ristretto255_is_valid_point(ctypes.c_char_p(point)) == 1
        assert point not in plain  # never a pseudonym's hash: always blinded by both keys
    fetches = [m for m in dealer.received if isinstance(m, dealer_pb2.FetchRequest)]
    assert {tuple(m.widths) for m in fetches} == {(4, 3)} and {m.pad_to for m in fetches} == {500}


def party_a_view(matched: np.ndarray, trials: int = 40) -> dict[str, np.ndarray]:
    """What party A (left) receives from the dealer over many jobs, with its records at
    positions `matched` linked to B's first records, and what A can compute itself."""
    pad, width = 400, 3
    rng = np.random.default_rng(5)
    s_low, c_low, hits = [], [], 0
    for t in range(trials):
        left = rng.bytes(32 * pad)
        right = bytearray(rng.bytes(32 * pad))
        for b_pos, a_pos in enumerate(matched):  # B's first records match A's `matched`
            right[32 * b_pos: 32 * b_pos + 32] = left[32 * a_pos: 32 * a_pos + 32]
        seeds = [new_seed(), new_seed()]
        shares, positions, corrections = link_outcome(f"job{t}", seeds, pad, (width, 2),
                                                      left, bytes(right))[0]
        own_masks = row_masks(seeds[0], f"job{t}", 0, pad, width)
        hits += np.isin(shares.numpy(), own_masks.numpy()).sum()
        hits += np.isin(corrections.numpy(), own_masks.numpy()).sum()
        assert sorted(positions.tolist()) == list(range(len(matched)))
        s_low.append(shares.numpy().astype(np.uint64) & 0xFF)
        c_low.append(corrections.numpy().astype(np.uint64) & 0xFF)
    return {"shares": np.concatenate([x.ravel() for x in s_low]),
            "corrections": np.concatenate([x.ravel() for x in c_low]), "hits": np.array(hits)}


def test_what_a_party_receives_does_not_depend_on_which_records_matched() -> None:
    first = party_a_view(np.arange(0, 100))          # A's first 100 records matched
    second = party_a_view(np.arange(250, 350))       # a different 100 of its records
    for view in (first, second):
        assert int(view["hits"]) == 0  # nothing A receives is recomputable from its seed
    for part in ("shares", "corrections"):
        a = np.bincount(first[part].astype(np.int64), minlength=256)
        b = np.bincount(second[part].astype(np.int64), minlength=256)
        expected = (a + b) / 2
        chi2 = float((((a - expected) ** 2 + (b - expected) ** 2) / expected).sum())
        assert chi2 < 400, (part, chi2)  # 255 degrees of freedom: the two match
        assert abs(a.mean() - len(first[part]) / 256) < 1  # and both are uniform bytes


def test_the_check_above_can_fail() -> None:
    """Were the dealer to send A its own mask at the matched rows (the design the
    protocol avoids), A would recognise them: the hit count above would not be 0."""
    seeds = [new_seed(), new_seed()]
    masks = row_masks(seeds[0], "job", 0, 400, 3)
    leaked = masks[torch.arange(100)]  # what a broken dealer might send
    assert np.isin(leaked.numpy(), masks.numpy()).sum() == leaked.numel()
