"""Distribution jobs with real processes on loopback: quantiles and Kaplan-Meier curves equal
a plaintext computation over the union of every party's rows; the ledger and contribution
bounds apply as for aggregates."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import pandas as pd
import pytest

from mpc.demo.federation import PartySetup
from mpc.errors import JobFailed
from mpc.kinds.distribution import DistributionJob, decode
from mpc.protocols.distribution import SCALE
from mpc.report.table import ReleasedTable
from tests.conftest import FIVE, Harness, start_federation
from tests.helpers import (
    EPISODE_CATEGORIES,
    plaintext_distribution,
    read_episodes,
    write_episodes,
)

EDGES = (0, 30, 60, 90, 120, 180, 270, 365, 540, 730)
USECASES = ["duration", "duration-3", "on-edge", "ledgered", "ledgered-bins", "bounded"]
MAX_ROWS = 2  # the bounded dataset's max_rows_per_person


def spec_text(name: str, parties: Sequence[str], *, dataset: str = "episodes",
              edges: Sequence[int] = EDGES, censor: bool = True, min_cell: int = 10,
              quantiles: Sequence[float] = (0.25, 0.5, 0.75)) -> bytes:
    quoted = ", ".join(f'"{p}"' for p in parties)
    return f"""
name = "{name}"
kind = "distribution"
parties = [{quoted}]
[input]
dataset = "{dataset}"
[distribution]
group_by = ["product", "line"]
measure = "duration_days"
{'censor = "censored"' if censor else ""}
bins = [{", ".join(str(e) for e in edges)}]
quantiles = [{", ".join(str(q) for q in quantiles)}]
[categories]
product = ["osimertinib", "durvalumab", "olaparib"]
line = ["1", "2", "3+"]
[disclosure]
min_cell = {min_cell}
""".encode()


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("episodes")
    files = write_episodes(folder, FIVE, seed=5)
    for party in FIVE:  # test_a_quantile_exactly_on_an_edge's data
        pd.DataFrame({"pseudonym": [f"{party}-{i}" for i in range(10)],
                      "product": "osimertinib", "line": "1",
                      "duration_days": [5] * 5 + [70] * 5, "censored": "false"}
                     ).to_csv(folder / party / "edge.csv", index=False)
    return files


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory,
            episodes: dict[str, Path]) -> Iterator[Harness]:
    key = {"person_key": "pseudonym", "max_persons": 10_000}
    setups = {p: PartySetup({"episodes": {"path": str(f)}, "ledgered": {"path": str(f)},
                             "bounded": {"path": str(f)},
                             "edge": {"path": str(f.parent / "edge.csv")}}, USECASES,
                            bounds={"episodes": {"ledger": False}, "edge": {"ledger": False},
                                    "ledgered": {**key, "ledger": True},
                                    "bounded": {**key, "ledger": False,
                                                "max_rows_per_person": MAX_ROWS}})
              for p, f in episodes.items()}
    fed = start_federation(tmp_path_factory.mktemp("fed"), {}, [], setups=setups)
    try:
        yield Harness(fed, episodes)
    finally:
        fed.stop()


def group_rows(frames: dict[str, pd.DataFrame]) -> tuple[list[tuple[int, int, bool]],
                                                          list[int]]:
    """(group index, days, censored) over the union of the parties' rows, and the number
    of parties with rows in each group."""
    combos = [(p, line) for p in EPISODE_CATEGORIES["product"]
              for line in EPISODE_CATEGORIES["line"]]
    index = {c: i for i, c in enumerate(combos)}
    rows, seen = [], [set() for _ in combos]
    for party, frame in frames.items():
        for product, line, days, censored in frame[["product", "line", "duration_days",
                                                    "censored"]].itertuples(index=False):
            g = index[(product, line)]
            rows.append((g, int(days), bool(censored)))
            seen[g].add(party)
    return rows, [len(s) for s in seen]


def assert_matches(table: ReleasedTable, expected: list[dict], censored: bool) -> None:
    job = table.spec.job
    assert isinstance(job, DistributionJob)
    m = len(job.edges) - 1
    bound = Fraction(2 * m, SCALE) if censored else Fraction(1, SCALE)
    for group, exp in zip(decode(table), expected, strict=True):
        assert group.n == (exp["n"] if exp["keep_n"] else None), group
        for k, (edge, survival) in enumerate(group.curve):
            assert edge == job.edges[k + 1]
            assert (survival is not None) == exp["keep_curve"][k], (group, k)
            if survival is not None:  # six decimals in the result, within the bound
                assert abs(Fraction(survival) - exp["curve"][k]) <= bound + Fraction(1, 10**6)
        for i, (_, b, days) in enumerate(group.quantiles):
            assert (b is not None) == exp["keep_q"][i], (group, i)
            if b is None:
                continue
            want_bin, want_days = exp["quantiles"][i]
            threshold = 1 - Fraction(round(job.quantiles[i] * 10_000), 10_000)
            if censored and any(abs(c - threshold) <= bound for c in exp["curve"]):
                continue  # a fixed-point tie: either neighbouring bin is right
            assert b == want_bin, (group, i)
            assert abs(days - want_days) <= (1 if censored else 0), (group, i)


@pytest.mark.parametrize("n_parties", [3, 5])
@pytest.mark.parametrize("censored", [True, False])
def test_release_equals_plaintext_kaplan_meier(harness: Harness, episodes: dict[str, Path],
                                               n_parties: int, censored: bool) -> None:
    parties = FIVE[:n_parties]
    name = "duration" if n_parties == 5 else "duration-3"
    text = spec_text(name, parties, censor=censored)
    outcome = harness.run(text)
    table = outcome.table
    assert table is not None
    rows, contributors = group_rows({p: read_episodes(episodes[p]) for p in parties})
    expected = plaintext_distribution(rows, 9, EDGES, (0.25, 0.5, 0.75), outcome.rules,
                                      censored, contributors)
    assert_matches(table, expected, censored)
    by_group = dict(zip(table.spec.category_rows(), expected, strict=True))
    # The data has what the comparison must cover: an empty group, an all-censored group,
    # released and suppressed curve points and quantiles.
    assert by_group[("olaparib", "3+")]["n"] == 0
    assert decode(table)[8].n == 0 and decode(table)[8].quantiles[1][1] is None
    if censored:
        assert all(c == 1 for c in by_group[("durvalumab", "3+")]["curve"])
    flags = [f for e in expected for f in e["keep_curve"] + e["keep_q"]]
    assert any(flags) and not all(flags)


def test_a_quantile_exactly_on_an_edge(harness: Harness) -> None:
    """Every party has 5 episodes of 5 days and 5 of 70 (dataset `edge`): over the 5
    parties the cumulative count reaches half of n exactly at the edge 30, so the median
    is 30, in the bin that ends there; the first quartile lies halfway into [0, 30)."""
    text = spec_text("on-edge", FIVE, dataset="edge", edges=(0, 30, 60, 90), censor=False)
    table = harness.run(text).table
    assert table is not None
    group = decode(table)[0]
    assert group.categories == ("osimertinib", "1") and group.n == 50
    # q75 lies halfway into [60, 90), but nobody is at risk at 90: that point is not
    # shown, so neither is the quantile inside the bin
    assert [(b, days) for _, b, days in group.quantiles] == [(0, 15), (0, 30), (None, None)]
    rows = [(0, 5, False)] * 25 + [(0, 70, False)] * 25
    expected = plaintext_distribution(rows, 9, (0, 30, 60, 90), (0.25, 0.5, 0.75),
                                      table.rules, False)
    assert_matches(table, expected, False)


def test_the_ledger_counts_other_bins_as_another_query(harness: Harness) -> None:
    harness.run(spec_text("ledgered", FIVE[:3], dataset="ledgered"))
    harness.run(spec_text("ledgered", FIVE[:3], dataset="ledgered"))  # the same: allowed
    with pytest.raises(JobFailed) as err:
        harness.run(spec_text("ledgered-bins", FIVE[:3], dataset="ledgered",
                              edges=(0, 30, 60, 91, 120, 180, 270, 365, 540, 730)))
    assert "other bins" in str(err.value), str(err.value)


def test_one_persons_episodes_are_bounded(harness: Harness, episodes: dict[str, Path]) -> None:
    parties = FIVE[:3]
    outcome = harness.run(spec_text("bounded", parties, dataset="bounded"))
    assert outcome.table is not None
    frames = {}
    for p in parties:
        frame = read_episodes(episodes[p])
        # the connector keeps each person's first rows in the order of their group values,
        # then measure and censoring
        frame = frame.sort_values(["pseudonym", "product", "line", "duration_days",
                                   "censored"], kind="stable")
        frames[p] = frame.groupby("pseudonym").head(MAX_ROWS)
        assert len(frames[p]) < len(frame)  # the bound leaves rows out
    rows, contributors = group_rows(frames)
    expected = plaintext_distribution(rows, 9, EDGES, (0.25, 0.5, 0.75), outcome.rules, True,
                                      contributors)
    assert_matches(outcome.table, expected, True)
    assert outcome.table.files()["result.csv"][1][0]["n"] == expected[0]["n"]


def test_the_audit_verifies_distribution_jobs(harness: Harness) -> None:
    """Runs last in this module: every job above passes the audit, whose small-cell check
    looks at each group's n, not at bins, days or curve points."""
    from mpc.audit.verify import verify

    outcome = harness.run(spec_text("duration-3", FIVE[:3]))
    assert outcome.table is not None
    values = outcome.table.audit_fields()["values"]
    assert any(v is not None and 0 < v < 10 for v in values)  # bins and days are small
    report = verify(harness.federation, sorted(harness.fed.logs.glob("*.jsonl")))
    assert report.ok, report.findings
    assert sum(1 for job in report.jobs if job["status"] == "completed") >= 5
