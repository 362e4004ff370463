"""The protocols with the parties as threads of this process (mpc.testing.inprocess): the
real engine, CrypTen, correlations and dealer outcome, no TLS or processes; each test
runs in well under a second. Every result is checked against a plaintext computation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch

from mpc.config.spec import DisclosureRules
from mpc.engine import crypten_compat
from mpc.engine.communicator import GrpcCommunicator
from mpc.errors import ProtocolAbort
from mpc.protocols.aggregate import aggregate
from mpc.protocols.agreement import agree_on_rules, rules_digest
from mpc.protocols.linkage import cross_table, linkage_shares, overlap_counts, overlap_shares
from mpc.testing.inprocess import run_in_threads, run_threads

CELLS = 12


def tables(world: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per party: counts per cell (many small and zero cells) and rows per cell."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 8, size=(world, CELLS)) * rng.integers(0, 2, size=(world, CELLS))
    rows = (values > 0).astype(np.int64) * rng.integers(1, 3, size=(world, CELLS))
    return values.astype(np.int64), rows


def expected_release(value: np.ndarray, contributors: np.ndarray,
                     rules: DisclosureRules) -> tuple[np.ndarray, np.ndarray]:
    keep = np.array([rules.keeps(int(v), int(c)) for v, c in zip(value, contributors,
                                                                  strict=True)],
                    dtype=np.int64)
    return keep, value * keep


def opened(ctx: Any, released: Any, dst: int = 0) -> dict[str, torch.Tensor | None]:
    return {"keep": ctx.open_to(released.keep, dst), "value": ctx.open_to(released.value, dst)}


def aggregate_program(ctx: Any, values: np.ndarray, rows: np.ndarray,
                      rules: DisclosureRules) -> dict[str, torch.Tensor | None]:
    released = aggregate(ctx, torch.from_numpy(values[ctx.rank]),
                         torch.from_numpy(rows[ctx.rank]), rules)
    return opened(ctx, released)


@pytest.mark.parametrize("rules", [
    DisclosureRules(min_cell=5, suppress_zero=False, min_contributors=1),
    DisclosureRules(min_cell=5, suppress_zero=True, min_contributors=2),
    DisclosureRules(min_cell=1, suppress_zero=False, min_contributors=3),
], ids=["min-cell", "zeros-and-contributors", "all-three-contribute"])
def test_aggregate_and_disclosure_match_plaintext(rules: DisclosureRules) -> None:
    values, rows = tables(3, seed=7)
    results = run_in_threads(aggregate_program, 3, args=(values, rows, rules))
    keep, value = expected_release(values.sum(0), (rows > 0).sum(0), rules)
    assert 0 < keep.sum() < CELLS  # the rules both keep and suppress here
    np.testing.assert_array_equal(results[0]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[0]["value"].numpy(), value)
    assert results[1]["keep"] is None and results[2]["value"] is None  # opened to rank 0 only


def noisy_program(ctx: Any, values: np.ndarray, noise: np.ndarray,
                  rules: DisclosureRules) -> dict[str, torch.Tensor | None]:
    released = aggregate(ctx, torch.from_numpy(values[ctx.rank]),
                         torch.from_numpy((values[ctx.rank] > 0).astype(np.int64)), rules,
                         noise=torch.from_numpy(noise[ctx.rank]))
    return opened(ctx, released, dst=1)


def test_noisy_aggregate_keeps_by_the_noisy_value() -> None:
    values, _ = tables(2, seed=3)
    noise = np.random.default_rng(4).integers(-3, 4, size=values.shape).astype(np.int64)
    rules = DisclosureRules(min_cell=4)
    results = run_in_threads(noisy_program, 2, args=(values, noise, rules))
    noisy = values.sum(0) + noise.sum(0)
    keep = (noisy >= rules.min_cell).astype(np.int64)
    np.testing.assert_array_equal(results[1]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[1]["value"].numpy(), noisy * keep)


# ---- linkage: the cross table of a plaintext join ---------------------------------------

LEFT_IDS = [f"p{i}" for i in range(0, 60)]
RIGHT_IDS = [f"p{i}" for i in range(25, 90)]
WIDTHS = (4, 3)


def cells_of(ids: list[str], width: int, salt: int) -> np.ndarray:
    return np.array([(int(i[1:]) * (salt + 2) + salt) % width for i in ids], dtype=np.int64)


def linkage_program(ctx: Any, io: Any, ids: list[list[str]], pad_to: int,
                    rules: DisclosureRules) -> dict[str, Any]:
    shares = linkage_shares(io, ids[io.rank], cells_of(ids[io.rank], WIDTHS[io.rank], io.rank),
                            WIDTHS, pad_to)
    result = opened(ctx, cross_table(ctx, shares, rules))
    result["linked"] = shares.linked
    return result


def plaintext_cross_table(left: list[str], right: list[str]) -> np.ndarray:
    a = dict(zip(left, cells_of(left, WIDTHS[0], 0), strict=True))
    b = dict(zip(right, cells_of(right, WIDTHS[1], 1), strict=True))
    table = np.zeros(WIDTHS, dtype=np.int64)
    for person in set(a) & set(b):
        table[a[person], b[person]] += 1
    return np.append(table.flatten(), len(set(a) & set(b)))


@pytest.mark.parametrize("rules", [DisclosureRules(min_cell=1, suppress_zero=False),
                                   DisclosureRules(min_cell=3, suppress_zero=True)],
                         ids=["everything", "small-cells-suppressed"])
def test_cross_table_matches_a_plaintext_join(rules: DisclosureRules) -> None:
    results = run_in_threads(linkage_program, 2, args=([LEFT_IDS, RIGHT_IDS], 80, rules),
                             with_io=True)
    values = plaintext_cross_table(LEFT_IDS, RIGHT_IDS)
    keep, value = expected_release(values, np.full_like(values, 1), rules)
    assert results[0]["linked"] == results[1]["linked"] == 35
    np.testing.assert_array_equal(results[0]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[0]["value"].numpy(), value)


def test_cross_table_of_disjoint_lists_is_all_zero() -> None:
    rules = DisclosureRules(min_cell=1, suppress_zero=False)
    results = run_in_threads(linkage_program, 2, with_io=True,
                             args=([LEFT_IDS[:20], RIGHT_IDS[-20:]], 30, rules))
    assert results[0]["linked"] == 0
    np.testing.assert_array_equal(results[0]["value"].numpy(), np.zeros(13, dtype=np.int64))
    np.testing.assert_array_equal(results[0]["keep"].numpy(), np.ones(13, dtype=np.int64))


# ---- overlap: the Venn histogram of plaintext sets ---------------------------------------

OVERLAP_IDS = [[f"p{i}" for i in range(0, 40)], [f"p{i}" for i in range(30, 60)],
               [f"p{i}" for i in range(35, 45)] + [f"q{i}" for i in range(7)]]


def overlap_program(ctx: Any, io: Any, ids: list[list[str]], pad_to: int,
                    rules: DisclosureRules) -> dict[str, Any]:
    counts, dummies = overlap_shares(io, ids[io.rank], pad_to)
    return opened(ctx, overlap_counts(ctx, counts, dummies, rules), dst=2)


def plaintext_venn(lists: list[list[str]]) -> np.ndarray:
    seen = Counter(p for ids in lists for p in set(ids))
    hist = Counter(seen.values())
    return np.array([hist.get(k, 0) for k in range(1, len(lists) + 1)] + [len(seen)],
                    dtype=np.int64)


@pytest.mark.parametrize("rules", [DisclosureRules(min_cell=1, suppress_zero=False),
                                   DisclosureRules(min_cell=6, suppress_zero=True)],
                         ids=["everything", "small-counts-suppressed"])
def test_overlap_counts_match_the_plaintext_venn_diagram(rules: DisclosureRules) -> None:
    results = run_in_threads(overlap_program, 3, with_io=True,
                             args=(OVERLAP_IDS, 50, rules))
    venn = plaintext_venn(OVERLAP_IDS)
    assert venn.tolist() == [52, 10, 5, 67]  # the sets above: 1, 2 and 3 parties, distinct
    keep, value = expected_release(venn, np.full_like(venn, 1), rules)
    np.testing.assert_array_equal(results[2]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[2]["value"].numpy(), value)
    assert results[0]["value"] is None


# ---- rule agreement --------------------------------------------------------------------

def agreement_program(ctx: Any, io: Any, rules: list[DisclosureRules]) -> str:
    return agree_on_rules(io.peers, "ab" * 32, rules[io.rank])


def test_agree_on_rules_returns_one_digest() -> None:
    rules = [DisclosureRules(min_cell=5)] * 3
    results = run_in_threads(agreement_program, 3, args=(rules,), with_io=True)
    assert len(set(results)) == 1
    assert len(results[0]) == 64


def test_one_party_with_other_rules_aborts_the_job() -> None:
    rules = [DisclosureRules(min_cell=5), DisclosureRules(min_cell=2), DisclosureRules(min_cell=5)]
    with pytest.raises(ProtocolAbort, match="was given other rules"):
        run_in_threads(agreement_program, 3, args=(rules,), with_io=True)


def test_the_digest_binds_job_spec_parties_and_rules() -> None:
    base = ("job", "ab" * 32, ["a", "b"], DisclosureRules(min_cell=5))
    digests = {rules_digest(*base), rules_digest("job2", *base[1:]),
               rules_digest(base[0], "cd" * 32, *base[2:]),
               rules_digest(*base[:2], ["b", "a"], base[3]),
               rules_digest(*base[:3], DisclosureRules(min_cell=6))}
    assert len(digests) == 5


# ---- the harness itself ----------------------------------------------------------------

def fails_at_rank_1(ctx: Any) -> torch.Tensor | None:
    parts = ctx.share_from_each(torch.tensor([ctx.rank], dtype=torch.int64))
    if ctx.rank == 1:
        raise ValueError("party 1 gives up")
    return ctx.open_to(parts[0] + parts[1] + parts[2], 0)  # the others wait for party 1


def test_the_first_failure_is_raised_not_its_echoes() -> None:
    with pytest.raises(ValueError, match="party 1 gives up") as info:
        run_in_threads(fails_at_rank_1, 3, timeout_s=20)
    assert any("party1" in note for note in info.value.__notes__)


def comparisons(ctx: Any) -> list[torch.Tensor | None]:
    x = ctx.share(torch.tensor([-5, 0, 7]) if ctx.rank == 0 else None, 0, (3,))
    return [ctx.open_to(x.nonnegative(), r) for r in range(ctx.world_size)]


def test_parties_consume_the_same_correlations_and_leave_nothing_behind() -> None:
    run = run_threads(comparisons, 3)
    assert run.results[1][1].tolist() == [0, 1, 1]
    assert len({tuple((e.seq, e.op, e.shape) for e in ledger) for ledger in run.ledgers}) == 1
    assert len(run.dealer.served) == len(run.ledgers[0]) > 0
    # The engine's per-thread state is gone with the threads; this thread never had any.
    assert crypten_compat.current() is None and not GrpcCommunicator.is_initialized()
    from crypten.cryptensor import CrypTensor
    assert CrypTensor.AUTOGRAD_ENABLED  # restored after the run


def nested_session(ctx: Any) -> str:
    from mpc.engine.rng import KeyStream
    from mpc.engine.session import EngineSession
    from mpc.errors import EngineError
    from mpc.testing.inprocess import InProcessNetwork

    other = EngineSession(InProcessNetwork("job-x", ["a", "b"]).mesh(0), KeyStream(bytes(32)),
                          None)
    try:
        with other:
            return "nested session ran"
    except EngineError as exc:
        return str(exc)


def test_a_thread_runs_one_session_at_a_time() -> None:
    assert run_in_threads(nested_session, 2) == ["a CrypTen session is already running on "
                                                 "this thread"] * 2
