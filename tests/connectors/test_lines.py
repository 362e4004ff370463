"""The treatment-line rule on hand-written histories, and on the synthetic hospitals."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mpc.connectors.lines import GAP_DAYS, REGIMEN_WINDOW_DAYS, derive_lines, line_label
from mpc.synth import generate_federation

DAY0 = date(2024, 1, 1)


def history(*rows: tuple) -> pd.DataFrame:
    """Rows (person, drug, start day, end day or None), days counted from DAY0."""
    def iso(day: int | None) -> str | None:
        return None if day is None else (DAY0 + timedelta(days=day)).isoformat()

    return pd.DataFrame([(p, drug, iso(s), iso(e)) for p, drug, s, e in rows],
                        columns=["person_id", "drug", "start_date", "end_date"])


def lines(*rows: tuple) -> list[int]:
    return derive_lines(history(*rows))["line"].tolist()


def cycles(person: int, drug: str, first: int, count: int, every: int = 21) -> list[tuple]:
    return [(person, drug, first + k * every, first + k * every) for k in range(count)]


def test_constants_and_labels() -> None:
    assert (GAP_DAYS, REGIMEN_WINDOW_DAYS) == (90, 30)
    assert [line_label(n) for n in (1, 2, 3, 4, 17)] == ["1", "2", "3+", "3+", "3+"]
    with pytest.raises(ValueError):
        line_label(0)


def test_single_drug_continuous_is_line_one() -> None:
    assert lines(*cycles(1, "osimertinib", 0, 12, every=30)) == [1] * 12


def test_combination_within_window_is_one_line() -> None:
    rows = [(1, "durvalumab", 0, 0), (1, "olaparib", REGIMEN_WINDOW_DAYS, 57),
            (1, "durvalumab", 28, 28), (1, "olaparib", 58, 85), (1, "durvalumab", 56, 56)]
    assert lines(*rows) == [1] * 5


def test_drug_added_after_window_starts_line_two() -> None:
    rows = [*cycles(1, "durvalumab", 0, 2, every=28),
            (1, "olaparib", REGIMEN_WINDOW_DAYS + 1, 58), (1, "durvalumab", 56, 56),
            (1, "olaparib", 59, 86)]
    # durvalumab on day 56 is within line 2's window, so line 2 is the combination.
    assert lines(*rows) == [1, 1, 2, 2, 2]


def test_gap_restarts_same_drug_as_new_line() -> None:
    rows = [(1, "olaparib", s, s + 27) for s in (0, 28, 56, 83 + 100)]
    assert lines(*rows) == [1, 1, 1, 2]


def test_gap_boundary_is_exclusive() -> None:
    base = [(1, "durvalumab", 0, 10)]
    assert lines(*base, (1, "durvalumab", 10 + GAP_DAYS, 10 + GAP_DAYS)) == [1, 1]
    assert lines(*base, (1, "durvalumab", 11 + GAP_DAYS, 11 + GAP_DAYS)) == [1, 2]


def test_window_boundary_is_inclusive() -> None:
    base = [(1, "durvalumab", 0, 0)]
    assert lines(*base, (1, "olaparib", REGIMEN_WINDOW_DAYS, 30)) == [1, 1]
    assert lines(*base, (1, "olaparib", REGIMEN_WINDOW_DAYS + 1, 31)) == [1, 2]


def test_gap_counts_from_latest_end_not_previous_row() -> None:
    # A long dispensing covers the gap after a short one that sorts later.
    rows = [(1, "osimertinib", 0, 200), (1, "durvalumab", 10, 10),
            (1, "osimertinib", 250, 279)]
    assert lines(*rows) == [1, 1, 1]


def test_switch_then_three_lines() -> None:
    rows = [*cycles(1, "osimertinib", 0, 4, every=30),
            *cycles(1, "durvalumab", 130, 3, every=28),
            *cycles(1, "osimertinib", 130 + 56 + 120, 2, every=30)]
    assert lines(*rows) == [1] * 4 + [2] * 3 + [3] * 2


def test_drug_switch_back_without_gap_is_a_new_line() -> None:
    rows = [(1, "osimertinib", 0, 29), (1, "durvalumab", 40, 40), (1, "osimertinib", 80, 109)]
    assert lines(*rows) == [1, 2, 3]


def test_interleaved_persons_keep_input_order() -> None:
    rows = [(2, "durvalumab", 0, 0), (1, "olaparib", 0, 27), (2, "osimertinib", 60, 89),
            (1, "olaparib", 28, 55), (3, "olaparib", 5, 32), (2, "durvalumab", 28, 28)]
    frame = history(*rows)
    frame.index = [10, 11, 12, 13, 14, 15]
    out = derive_lines(frame)
    assert out.index.tolist() == [10, 11, 12, 13, 14, 15]
    assert out.drop(columns="line").equals(frame)
    assert out["line"].tolist() == [1, 1, 2, 1, 1, 1]
    assert out["line"].dtype == np.int64


def test_null_end_means_single_day() -> None:
    rows = [(1, "durvalumab", 0, None), (1, "durvalumab", GAP_DAYS, None),
            (1, "durvalumab", 2 * GAP_DAYS + 1, None)]
    assert lines(*rows) == [1, 1, 2]
    frame = history(*rows).assign(end_date=[None, pd.NaT, np.nan])
    assert derive_lines(frame)["line"].tolist() == [1, 1, 2]


def test_unsorted_input_and_datetime_columns() -> None:
    rows = [(1, "osimertinib", 300, 329), (1, "durvalumab", 0, 0), (1, "osimertinib", 150, 179),
            (1, "durvalumab", 28, 28)]
    frame = history(*rows)
    assert derive_lines(frame)["line"].tolist() == [3, 1, 2, 1]
    typed = frame.assign(start_date=pd.to_datetime(frame["start_date"]),
                         end_date=pd.to_datetime(frame["end_date"]))
    assert derive_lines(typed)["line"].tolist() == [3, 1, 2, 1]


def test_ties_sort_by_drug_name() -> None:
    # Same day: durvalumab sorts first and starts line 2 after a gap; olaparib joins it.
    rows = [(1, "olaparib", 0, 27), (1, "olaparib", 200, 227), (1, "durvalumab", 200, 200)]
    assert lines(*rows) == [1, 2, 2]
    # Same day, no gap: durvalumab sorts first and, new after the window, starts line 2;
    # olaparib that day joins line 2's regimen instead of continuing line 1.
    rows = [(1, "olaparib", 0, 27), (1, "olaparib", 40, 67), (1, "durvalumab", 40, 40)]
    assert lines(*rows) == [1, 2, 2]


def test_errors() -> None:
    with pytest.raises(ValueError, match="drug"):
        derive_lines(history((1, "a", 0, 0)).drop(columns="drug"))
    with pytest.raises(ValueError, match="start_date"):
        derive_lines(history((1, "a", 0, 0)).assign(start_date=[None]))
    with pytest.raises(ValueError, match="start_date"):
        derive_lines(history((1, "a", 0, 0)).assign(start_date=["not a date"]))
    empty = derive_lines(history())
    assert list(empty.columns)[-1] == "line" and empty.empty


def test_a_million_rows_in_seconds() -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    start = np.datetime64("2022-01-01") + rng.integers(0, 1000, n)
    frame = pd.DataFrame({"person_id": rng.integers(0, 50_000, n),
                          "drug": rng.choice(["osimertinib", "durvalumab", "olaparib"], n),
                          "start_date": start, "end_date": start + rng.integers(0, 30, n)})
    began = time.perf_counter()
    out = derive_lines(frame)
    assert time.perf_counter() - began < 10
    assert out["line"].min() == 1


# The view a hospital with episodes would use: each exposure falls in exactly one episode.
EPISODE_LINES = """
SELECT de.drug_exposure_id, ep.episode_number
FROM read_csv('{omop}/drug_exposure.csv') de
JOIN read_csv('{omop}/episode.csv') ep
  ON de.person_id = ep.person_id
 AND de.drug_exposure_start_date BETWEEN ep.episode_start_date AND ep.episode_end_date
"""


def test_synthetic_episodes_follow_the_rule(tmp_path: Path) -> None:
    result = generate_federation(tmp_path, patients=3000, seed=5)
    with_episodes = [h for h, folder in result.hospitals.items()
                     if (folder / "episode.csv").exists()]
    assert len(with_episodes) == 2
    for party in with_episodes:
        omop = result.hospitals[party]
        exposures = pd.read_csv(omop / "drug_exposure.csv")
        recorded = duckdb.sql(EPISODE_LINES.format(omop=omop)).df()
        assert len(recorded) == len(exposures) and recorded["drug_exposure_id"].is_unique
        derived = derive_lines(exposures.rename(columns={
            "drug_source_value": "drug", "drug_exposure_start_date": "start_date",
            "drug_exposure_end_date": "end_date"}))
        both = derived.merge(recorded, on="drug_exposure_id", validate="1:1")
        # A patient referred in brings earlier lines from elsewhere: the hospital's episodes
        # number on from them, while the local rule starts at 1.
        offset = both.groupby("person_id")["episode_number"].transform("min") - 1
        assert (both["line"] + offset == both["episode_number"]).all()
        assert (offset == 0).mean() > 0.7  # most patients started treatment here
        exact = both[offset == 0]
        assert (exact["line"] == exact["episode_number"]).all() and exact["line"].max() >= 3
