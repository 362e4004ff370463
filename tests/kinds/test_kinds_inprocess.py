"""Each job kind's joint part (prepare, then compute inside the engine) and the release
delivery, with the parties as threads (mpc.testing.inprocess): the kind's module as the job
process runs it, checked against plaintext, in well under a second per test."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc.config.rules import DisclosureRules
from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.connectors.table import LocalTable
from mpc.kinds import JobContext, kind_of
from mpc.kinds.aggregate import TableInput
from mpc.kinds.linkage import LinkageJob, PersonInput
from mpc.kinds.overlap import IdsInput
from mpc.testing.inprocess import run_in_threads
from mpc.worker.release import open_to_recipients

PARTIES = ["a", "b", "c"]


class Recorder:
    """The audit recorder's `add`, keeping entries in memory."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def add(self, event: str, **fields: Any) -> None:
        self.entries.append((str(event), fields))


def context(spec: UseCaseSpec, io: Any, rules: DisclosureRules,
            phases: list[str] | None = None) -> JobContext:
    return JobContext(spec=spec, rules=rules, party=spec.parties[io.rank], rank=io.rank,
                      link=io, audit=Recorder(),
                      phase=(phases if phases is not None else []).append)


def joint(ctx: Any, io: Any, spec: UseCaseSpec, inputs: list[Any], rules: DisclosureRules,
          recipient: int, results: Path | None = None) -> dict[str, Any]:
    """One party's run of its kind, then the release opened to `recipient`."""
    kind = kind_of(spec.job)
    phases: list[str] = []
    job = context(spec, io, rules, phases)
    released = kind.compute(ctx, job, kind.prepare(job, inputs[io.rank]))
    out: dict[str, Any] = {"phases": phases, "audit": job.audit.entries}
    if results is not None:
        out["shares"] = open_to_recipients(ctx, job, released, results / spec.parties[io.rank])
    else:
        out["keep"] = ctx.open_to(released.keep, recipient)
        out["value"] = ctx.open_to(released.value, recipient)
    return out


def expected(values: np.ndarray, contributors: np.ndarray,
             rules: DisclosureRules) -> tuple[np.ndarray, np.ndarray]:
    keep = np.array([rules.keeps(int(v), int(c)) for v, c in zip(values, contributors,
                                                                  strict=True)], dtype=np.int64)
    return keep, values * keep


# ---- aggregate ------------------------------------------------------------------------

AGGREGATE = b"""
name = "u"
kind = "aggregate"
parties = ["a", "b", "c"]
[input]
dataset = "d"
[aggregate]
group_by = ["x"]
[categories]
x = ["1", "2", "3", "4", "5", "6"]
"""


def table_inputs(seed: int) -> tuple[list[TableInput], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 9, size=(3, 6)) * rng.integers(0, 2, size=(3, 6))
    rows = (values > 0).astype(np.int64)
    inputs = [TableInput("6 cells", b"", table=LocalTable(values[r].astype(np.int64), rows[r]))
              for r in range(3)]
    return inputs, values.sum(0), rows.sum(0)


def test_aggregate_kind_releases_the_suppressed_sum() -> None:
    spec = parse_spec(AGGREGATE)
    rules = DisclosureRules(min_cell=6, min_contributors=2)
    inputs, total, contributors = table_inputs(seed=11)
    results = run_in_threads(joint, 3, args=(spec, inputs, rules, 1), with_io=True)
    keep, value = expected(total, contributors, rules)
    assert 0 < keep.sum() < 6
    np.testing.assert_array_equal(results[1]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[1]["value"].numpy(), value)
    assert results[0]["keep"] is None
    assert results[0]["phases"] == ["sharing", "computing", "disclosure"]


def test_release_delivery_writes_the_result_at_the_recipient_party_only(
        tmp_path: Path) -> None:
    spec = parse_spec(AGGREGATE.replace(b'parties = ["a", "b", "c"]',
                                        b'parties = ["a", "b", "c"]\nrecipients = ["b"]'))
    rules = DisclosureRules(min_cell=1)
    inputs, total, _ = table_inputs(seed=5)
    results = run_in_threads(joint, 3, args=(spec, inputs, rules, 1, tmp_path), with_io=True)
    assert all(r["shares"] == {} for r in results)  # the coordinator is no recipient
    written = sorted(p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("result.json"))
    assert written == ["b"]
    released = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert [row["value"] for row in released["rows"]] == total.tolist()
    for rank, result in enumerate(results):  # every party audits the release it took part in
        events = [event for event, _ in result["audit"]]
        assert events == (["release", "result"] if rank == 1 else ["release"])


# ---- linkage --------------------------------------------------------------------------

LINKAGE = b"""
name = "l"
kind = "linkage"
parties = ["a", "b"]
[linkage]
key = "k"
pad_to = 40
left = { party = "a", dataset = "d", by = ["x"] }
right = { party = "b", dataset = "e", by = ["y"] }
[categories]
x = ["1", "2", "3"]
y = ["u", "v"]
[disclosure]
min_cell = 2
"""


def test_linkage_kind_releases_the_cross_table_of_a_plaintext_join() -> None:
    spec = parse_spec(LINKAGE)
    assert isinstance(spec.job, LinkageJob) and spec.job.widths() == (3, 2)
    left = {f"p{i}": i % 3 for i in range(0, 30)}
    right = {f"p{i}": i % 2 for i in range(12, 38)}
    inputs = [PersonInput("", b"", ids=list(side), cells=np.array(list(side.values())))
              for side in (left, right)]
    results = run_in_threads(joint, 2, args=(spec, inputs, spec.disclosure, 0), with_io=True)
    table = np.zeros((3, 2), dtype=np.int64)
    for person in left.keys() & right.keys():
        table[left[person], right[person]] += 1
    values = np.append(table.flatten(), len(left.keys() & right.keys()))
    keep, value = expected(values, np.ones_like(values), spec.disclosure)
    np.testing.assert_array_equal(results[0]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[0]["value"].numpy(), value)
    assert "blinding" in results[1]["phases"] and "matching" in results[1]["phases"]


# ---- overlap --------------------------------------------------------------------------

OVERLAP = b"""
name = "o"
kind = "overlap"
parties = ["a", "b", "c"]
[input]
dataset = "d"
[overlap]
key = "k"
pad_to = 30
[disclosure]
min_cell = 1
"""


@pytest.mark.parametrize("lists", [
    [[f"p{i}" for i in range(0, 20)], [f"p{i}" for i in range(15, 25)], ["p18", "q1"]],
    [[], ["p1"], []],
], ids=["overlapping", "nearly-empty"])
def test_overlap_kind_releases_the_venn_histogram(lists: list[list[str]]) -> None:
    spec = parse_spec(OVERLAP)
    inputs = [IdsInput("", b"", ids=ids) for ids in lists]
    results = run_in_threads(joint, 3, args=(spec, inputs, spec.disclosure, 2), with_io=True)
    seen = Counter(p for ids in lists for p in ids)
    hist = Counter(seen.values())
    values = np.array([hist.get(k, 0) for k in (1, 2, 3)] + [len(seen)], dtype=np.int64)
    keep, value = expected(values, np.ones_like(values), spec.disclosure)
    np.testing.assert_array_equal(results[2]["keep"].numpy(), keep)
    np.testing.assert_array_equal(results[2]["value"].numpy(), value)


# ---- distribution ---------------------------------------------------------------------

DISTRIBUTION = b"""
name = "durations"
kind = "distribution"
parties = ["a", "b", "c"]
recipients = ["c"]
[input]
dataset = "episodes"
[distribution]
group_by = ["product"]
measure = "days"
censor = "ongoing"
bins = [0, 30, 90, 180]
quantiles = [0.25, 0.5]
[categories]
product = ["p", "q", "r"]
[disclosure]
min_cell = 5
"""


def test_distribution_kind_writes_its_result_and_curve_at_the_recipient(
        tmp_path: Path) -> None:
    from mpc.kinds.distribution import HistogramInput

    spec = parse_spec(DISTRIBUTION)
    # 20 episodes of product p spread over the parties (2 censored), 3 of q, none of r.
    hist = np.zeros((3, 3, 4, 2), dtype=np.int64)  # party, group, bin, events/censored
    hist[0, 0, 0, 0] = 5  # p: 5 events below 30 days at a
    hist[1, 0, 1, 0] = 5  # p: 5 events in [30, 90) at b
    hist[2, 0, 1, 1] = 2  # p: 2 censored in [30, 90) at c
    hist[2, 0, 3, 0] = 8  # p: 8 events from 180 days at c
    hist[0, 1, 2, 0] = 3  # q: 3 events, below min_cell
    inputs = [HistogramInput("3 groups x 4 bins", b"", histogram=hist[r]) for r in range(3)]
    rules = DisclosureRules(min_cell=5)
    run_in_threads(joint, 3, args=(spec, inputs, rules, 2, tmp_path), with_io=True)
    folder = tmp_path / "c" / "durations"
    assert sorted(p.name for p in folder.iterdir()) == ["curve.csv", "result.csv",
                                                       "result.json"]
    result = (folder / "result.csv").read_text().splitlines()
    # Kaplan-Meier: S(30) = 1 - 5/20 = 3/4 (15 at risk), S(90) = 3/4 * (1 - 5/15) = 1/2
    # (8 at risk), S(180) = 1/2 (no events in [90, 180), 8 at risk): every step has 5
    # events or none. q25 is reached exactly at 30, the median exactly at 90.
    assert result == ["product,n,q25,q50,q25_bin,q50_bin,suppressed",
                      "p,20,30,90,\"[0, 30)\",\"[30, 90)\",false",
                      "q,,,,,,true",
                      "r,0,,,,,false"]
    curve = (folder / "curve.csv").read_text().splitlines()
    assert curve[:4] == ["product,days,survival,suppressed", "p,30,0.75,false",
                         "p,90,0.5,false", "p,180,0.5,false"]
    released = json.loads((folder / "result.json").read_text())
    assert released["kind"] == "distribution" and len(released["curve"]) == 9
    assert released["suppressed_cells"] == 1
