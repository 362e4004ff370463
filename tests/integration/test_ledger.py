"""The release ledger against real workers: per dataset, the same query may repeat and
disjoint periods may follow each other; another party set, an overlapping period or a
coarser table is refused; the privacy budget holds across restarts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpc.audit.verify import verify
from mpc.demo import PartySetup, demo_bounds
from mpc.errors import JobFailed
from mpc.synth import generate_federation
from tests.conftest import Harness, start_federation

HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]
BUDGET = 2.5
Q1, Q2 = "2024-01-01..2024-04-01", "2024-04-01..2024-07-01"


def spec(name: str, parties: list[str] = HOSPITALS, *, window: str = Q1,
         group_by: tuple[str, ...] = ("product", "line"), noise: str = "") -> bytes:
    start, end = window.split("..")
    lines = [f'name = "{name}"', 'kind = "aggregate"',
             "parties = [" + ", ".join(f'"{p}"' for p in parties) + "]",
             "[input]", 'dataset = "treatments"',
             f'window = {{ column = "start_date", from = {start}, to = {end} }}',
             "[aggregate]", f"group_by = [{', '.join(repr(c) for c in group_by)}]".replace(
                 "'", '"'), 'measure = "count"', "[categories]",
             'product = ["osimertinib", "durvalumab", "olaparib"]', 'line = ["1", "2", "3+"]',
             "[disclosure]", "min_cell = 5"]
    if "line" not in group_by:
        lines.remove('line = ["1", "2", "3+"]')
    if noise:
        lines.append(f'noise = {{ mechanism = "discrete_laplace", epsilon = {noise} }}')
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("ledger")
    data = generate_federation(root / "data", hospitals=HOSPITALS, insurers=(),
                               pharmacies=(), patients=1500, seed=23)
    names = [f"u{i}" for i in range(20)]
    bounds = {"treatments": demo_bounds("treatments", epsilon_budget=BUDGET)}
    setups = {h: PartySetup({"treatments": {"omop": str(folder)}}, names, bounds=bounds)
              for h, folder in data.hospitals.items()}
    fed = start_federation(root / "fed", {}, [], setups=setups)
    try:
        yield Harness(fed, {})
    finally:
        fed.stop()


def refused(harness: Harness, text: bytes, parties: list[str] = HOSPITALS) -> JobFailed:
    with pytest.raises(JobFailed) as failed:
        harness.run(text)
    assert failed.value.party in parties
    harness.assert_aborted_everywhere(failed.value.job_id, parties=parties)
    return failed.value


def test_the_same_query_repeats_under_any_name_but_not_for_fewer_parties(
        harness: Harness) -> None:
    assert harness.run(spec("u0")).table is not None
    assert harness.run(spec("u1")).table is not None  # the name is no key of the ledger
    failure = refused(harness, spec("u2", HOSPITALS[:2]), HOSPITALS[:2])
    assert "differencing" in failure.cause and "another party set" in failure.cause
    assert "differential privacy" in failure.cause


def test_disjoint_periods_follow_each_other_overlapping_ones_do_not(harness: Harness) -> None:
    assert harness.run(spec("u3", window=Q2)).table is not None
    failure = refused(harness, spec("u4", window="2024-03-01..2024-06-01"))
    assert "overlapping but different scope" in failure.cause


def test_a_coarser_table_on_counted_rows_is_refused(harness: Harness) -> None:
    """Its margins would reveal the cells the finer table suppressed."""
    failure = refused(harness, spec("u5", group_by=("product",)))
    assert "other categories, groups" in failure.cause


def test_privacy_budget_is_spent_and_survives_a_restart(harness: Harness) -> None:
    dp = spec("u11", noise="1.0")  # noisy releases are accounted by the budget instead
    for _ in range(2):
        outcome = harness.run(dp)
        assert outcome.table is not None and outcome.table.interval is not None
    failure = refused(harness, dp)
    assert f"exhausted: this job needs epsilon 1, 0.5 of {BUDGET:g} is left" in failure.cause
    harness.fed.kill("hospital_b")
    harness.fed.start_worker("hospital_b")
    failure = refused(harness, dp)
    assert "privacy budget of dataset 'treatments' is exhausted" in failure.cause
    # The ledger is in the signed audit logs, and they verify.
    entries = [e for e in harness.audit_events_of("hospital_b")
               if e["event"] == "release_recorded"]
    assert sum(e["epsilon"] for e in entries) == 2.0
    report = verify(harness.federation, sorted(harness.fed.logs.glob("*.jsonl")))
    assert [f for f in report.findings if f.check not in ("truncated",)] == []
