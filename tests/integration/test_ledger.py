"""The release ledger against real workers: differencing across jobs is refused, scheduled
repeats over separate periods run, and the privacy budget holds across restarts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mpc.audit.verify import verify
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from mpc.synth import generate_federation
from tests.conftest import Harness, start_federation

HOSPITALS = ["hospital_a", "hospital_b", "hospital_c"]
BUDGET = 2.5


def spec(name: str, family: str, parties: list[str] = HOSPITALS, *, window: str = "",
         filter_: str = "", schedule: str = "", noise: str = "") -> bytes:
    lines = [f'name = "{name}"', f'family = "{family}"', 'kind = "aggregate"',
             "parties = [" + ", ".join(f'"{p}"' for p in parties) + "]",
             "[input]", 'dataset = "treatments"']
    if window:
        start, end = window.split("..")
        lines.append(f'window = {{ column = "start_date", from = {start}, to = {end} }}')
    if filter_:
        lines.append(f"filter = {{ indication = [{filter_}] }}")
    if schedule:
        lines.append(f'schedule = "{schedule}"')
    lines += ["[aggregate]", 'group_by = ["product", "line"]', 'measure = "count"',
              "[categories]", 'product = ["osimertinib", "durvalumab", "olaparib"]',
              'line = ["1", "2", "3+"]', "[disclosure]", "min_cell = 5"]
    if noise:
        lines.append(f'noise = {{ mechanism = "discrete_laplace", epsilon = {noise} }}')
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("ledger")
    data = generate_federation(root / "data", hospitals=HOSPITALS, insurers=(),
                               pharmacies=(), patients=1500, seed=23)
    names = [f"u{i}" for i in range(20)]
    setups = {h: PartySetup({"treatments": {"omop": str(folder)}}, names,
                            budget={"treatments": BUDGET})
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


def test_a_party_set_that_differs_by_one_is_refused(harness: Harness) -> None:
    assert harness.run(spec("u0", "by-party")).table is not None
    failure = refused(harness, spec("u1", "by-party", HOSPITALS[:2]), HOSPITALS[:2])
    assert "differencing" in failure.cause and "differ only by hospital_c" in failure.cause
    # Another family, or the same parties and scope again, is no differencing.
    assert harness.run(spec("u2", "other-family", HOSPITALS[:2])).table is not None
    assert harness.run(spec("u3", "by-party")).table is not None


def test_nested_windows_and_filters_are_refused(harness: Harness) -> None:
    assert harness.run(spec("u4", "by-window", window="2023-01-01..2025-01-01")).table
    failure = refused(harness, spec("u5", "by-window", window="2024-01-01..2025-01-01"))
    assert "window overlaps that of job" in failure.cause
    assert harness.run(spec("u6", "by-filter", filter_='"NSCLC", "SCLC"')).table
    failure = refused(harness, spec("u7", "by-filter", filter_='"NSCLC"'))
    assert "filter overlaps" in failure.cause


def test_scheduled_repeats_over_separate_periods_run(harness: Harness) -> None:
    for i, quarter in enumerate(["2024-01-01..2024-04-01", "2024-04-01..2024-07-01"]):
        assert harness.run(spec(f"u{8 + i}", "quarterly", window=quarter,
                                schedule="repeat")).table
    failure = refused(harness, spec("u10", "quarterly", window="2024-05-01..2024-08-01",
                                    schedule="repeat"))
    assert "only scheduled repeats over non-overlapping periods" in failure.cause


def test_privacy_budget_is_spent_and_survives_a_restart(harness: Harness) -> None:
    dp = spec("u11", "noisy", noise="1.0")
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
