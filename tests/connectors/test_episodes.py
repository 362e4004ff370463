"""The `treatment_episodes` view on hand-written OMOP histories, every expected value worked
out by hand from the rule in connectors/omop.py; and its dataset config."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mpc.config.bounds import Clip
from mpc.config.party import DatasetConfig, load_party_config
from mpc.config.rules import Measure
from mpc.config.scope import Reduce, Window
from mpc.connectors import TableRequest, compute_local_table
from mpc.connectors.omop import EPISODE_COLUMNS, register_omop
from mpc.connectors.persons import PersonRequest, compute_person_rows
from mpc.errors import ConfigError, DataError

DAY0 = date(2023, 1, 1)
PRODUCTS = ("osimertinib", "durvalumab", "olaparib")
LINES = ("1", "2", "3+")


def iso(day: int) -> str:
    return (DAY0 + timedelta(days=day)).isoformat()


PERSONS = [(1, "p1", "NSCLC"), (2, "p2", "SCLC"), (3, "p3", "breast"), (4, "p4", "prostate"),
           (5, "p5", "ovarian"), (6, "p6", "NSCLC"), (7, "p7", "ovarian")]


def monthly(person: int, drug: str, first: int, count: int, supply: int) -> list[tuple]:
    return [(person, drug, first + k * supply, first + k * supply + supply - 1)
            for k in range(count)]


# (person_id, drug, start day, end day or None); days from DAY0.
EXPOSURES = [
    # p1: osimertinib every 30 days from day 0, the last supply from day 690 to 719: still on
    # it at the cut-off (719, the latest date in drug_exposure).
    *monthly(1, "osimertinib", 0, 24, 30),
    # p2: durvalumab (the last infusion without an end date), then a switch to olaparib on
    # day 120: a second line (a new drug, 47 days after the last infusion); it ends on
    # day 175, long before the cut-off.
    (2, "durvalumab", 10, 10), (2, "durvalumab", 31, 31), (2, "durvalumab", 52, 52),
    (2, "durvalumab", 73, None), (2, "olaparib", 120, 147), (2, "olaparib", 148, 175),
    # p3 and p4: the last dispensing has no end date, so it ends the day it starts: 91 and
    # 90 days before the cut-off.
    (3, "olaparib", 600, 627), (3, "olaparib", 628, None),
    (4, "olaparib", 601, 628), (4, "olaparib", 629, None),
    # p5: two months of olaparib.
    *monthly(5, "olaparib", 0, 2, 28),
    # p6: four lines: osimertinib, a switch to durvalumab, back to osimertinib (line 3),
    # and osimertinib again after a 121-day gap (line 4: a second "3+" row of osimertinib).
    (6, "osimertinib", 0, 29), (6, "durvalumab", 60, 60), (6, "durvalumab", 88, 88),
    (6, "osimertinib", 100, 129), (6, "osimertinib", 250, 279),
    # p7: durvalumab and olaparib, olaparib joining within the 30-day window: one line.
    (7, "durvalumab", 0, 0), (7, "olaparib", 14, 41), (7, "durvalumab", 28, 28),
    (7, "olaparib", 42, 69), (7, "durvalumab", 56, 56),
]
CUTOFF = 719

# (person_id, episode_number, start day, end day). p2 came with a referral: its lines are
# 2 and 3 here; p6's hospital records all its treatment as one line.
EPISODES = [(1, 1, 0, 719), (2, 2, 0, 100), (2, 3, 110, 200), (3, 1, 600, 628),
            (4, 1, 601, 629), (5, 1, 0, 55), (6, 1, 0, 300), (7, 1, 0, 69)]

# (person_id, start day, end day). p2 has two periods (the latest ends on day 200: died);
# p4 has none (the cut-off counts); p5's ends before its last administration (day 28).
OBSERVATION = [(1, -10, 730), (2, -30, 100), (2, 110, 200), (3, 590, 700), (5, -5, 20),
               (6, -20, 800), (7, -3, 400)]

# pseudonym, product, line, start, end, duration_days, censored,
# time_to_next_treatment_days, next_treatment_censored
Row = tuple[str, str, str, int, int, int, bool, int, bool]

# Lines derived from drug_exposure, last observation = the cut-off (719).
DERIVED_CUTOFF: list[Row] = [
    ("p1", "osimertinib", "1", 0, 719, 720, True, 719, True),  # 719 - 719 = 0 <= 90
    ("p2", "durvalumab", "1", 10, 73, 64, False, 110, False),  # next line on day 120
    ("p2", "olaparib", "2", 120, 175, 56, False, 599, True),  # 719 - 175 = 544 > 90
    ("p3", "olaparib", "1", 600, 628, 29, False, 119, True),  # 719 - 628 = 91 > 90
    ("p4", "olaparib", "1", 601, 629, 29, True, 118, True),  # 719 - 629 = 90
    ("p5", "olaparib", "1", 0, 55, 56, False, 719, True),
    ("p6", "osimertinib", "1", 0, 29, 30, False, 60, False),
    ("p6", "durvalumab", "2", 60, 88, 29, False, 40, False),
    ("p6", "osimertinib", "3+", 100, 129, 30, False, 150, False),
    ("p6", "osimertinib", "3+", 250, 279, 30, False, 469, True),
    ("p7", "durvalumab", "1", 0, 56, 57, False, 719, True),  # the line's first day: 0
    ("p7", "olaparib", "1", 14, 69, 56, False, 719, True),
]

# The same lines, last observation from observation_period.
DERIVED_OBSERVED: list[Row] = [
    ("p1", "osimertinib", "1", 0, 719, 720, True, 730, True),  # 730 - 719 = 11
    ("p2", "durvalumab", "1", 10, 73, 64, False, 110, False),
    ("p2", "olaparib", "2", 120, 175, 56, True, 80, True),  # 200 - 175 = 25
    ("p3", "olaparib", "1", 600, 628, 29, True, 100, True),  # 700 - 628 = 72
    ("p4", "olaparib", "1", 601, 629, 29, True, 118, True),  # no period: the cut-off
    ("p5", "olaparib", "1", 0, 55, 56, True, 28, True),  # last seen on day 28, not 20
    ("p6", "osimertinib", "1", 0, 29, 30, False, 60, False),
    ("p6", "durvalumab", "2", 60, 88, 29, False, 40, False),
    ("p6", "osimertinib", "3+", 100, 129, 30, False, 150, False),
    ("p6", "osimertinib", "3+", 250, 279, 30, False, 550, True),  # 800 - 279 = 521
    ("p7", "durvalumab", "1", 0, 56, 57, False, 400, True),  # 400 - 56 = 344
    ("p7", "olaparib", "1", 14, 69, 56, False, 400, True),
]

# Lines from the episode table: p2's are 2 and 3, p6 has one line.
EPISODES_CUTOFF: list[Row] = [
    ("p1", "osimertinib", "1", 0, 719, 720, True, 719, True),
    ("p2", "durvalumab", "2", 10, 73, 64, False, 110, False),
    ("p2", "olaparib", "3+", 120, 175, 56, False, 599, True),
    ("p3", "olaparib", "1", 600, 628, 29, False, 119, True),
    ("p4", "olaparib", "1", 601, 629, 29, True, 118, True),
    ("p5", "olaparib", "1", 0, 55, 56, False, 719, True),
    ("p6", "durvalumab", "1", 60, 88, 29, False, 719, True),
    ("p6", "osimertinib", "1", 0, 279, 280, False, 719, True),  # 719 - 279 = 440
    ("p7", "durvalumab", "1", 0, 56, 57, False, 719, True),
    ("p7", "olaparib", "1", 14, 69, 56, False, 719, True),
]

EPISODES_OBSERVED: list[Row] = [
    ("p1", "osimertinib", "1", 0, 719, 720, True, 730, True),
    ("p2", "durvalumab", "2", 10, 73, 64, False, 110, False),
    ("p2", "olaparib", "3+", 120, 175, 56, True, 80, True),
    ("p3", "olaparib", "1", 600, 628, 29, True, 100, True),
    ("p4", "olaparib", "1", 601, 629, 29, True, 118, True),
    ("p5", "olaparib", "1", 0, 55, 56, True, 28, True),
    ("p6", "durvalumab", "1", 60, 88, 29, False, 800, True),
    ("p6", "osimertinib", "1", 0, 279, 280, False, 800, True),
    ("p7", "durvalumab", "1", 0, 56, 57, False, 400, True),
    ("p7", "olaparib", "1", 14, 69, 56, False, 400, True),
]

INDICATION = {pseudonym: ind for _, pseudonym, ind in PERSONS}


def write_omop(folder: Path, *, episodes: bool, observation: bool, fmt: str = "csv") -> Path:
    """The hand-written histories as OMOP tables (CSV with ISO dates, or Parquet dates)."""
    def date_column(days: list[int | None]) -> list[str | None] | pd.Series:
        if fmt == "csv":
            return [None if d is None else iso(d) for d in days]
        return pd.Series(pd.to_datetime([None if d is None else iso(d) for d in days])
                         ).dt.date

    def write(table: str, frame: pd.DataFrame) -> None:
        if fmt == "csv":
            frame.to_csv(folder / f"{table}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{table}.parquet", index=False)

    folder.mkdir(parents=True)
    write("person", pd.DataFrame({
        "person_id": [p for p, _, _ in PERSONS], "gender_concept_id": 8532,
        "year_of_birth": 1960, "person_source_value": [s for _, s, _ in PERSONS]}))
    write("condition_occurrence", pd.DataFrame({
        "condition_occurrence_id": range(1, len(PERSONS) + 1),
        "person_id": [p for p, _, _ in PERSONS],
        "condition_start_date": date_column([-30] * len(PERSONS)),
        "condition_source_value": [ind for _, _, ind in PERSONS]}))
    write("drug_exposure", pd.DataFrame({
        "drug_exposure_id": range(1, len(EXPOSURES) + 1),
        "person_id": [e[0] for e in EXPOSURES],
        "drug_exposure_start_date": date_column([e[2] for e in EXPOSURES]),
        "drug_exposure_end_date": date_column([e[3] for e in EXPOSURES]),
        "drug_source_value": [e[1] for e in EXPOSURES]}))
    if episodes:
        write("episode", pd.DataFrame({
            "episode_id": range(1, len(EPISODES) + 1),
            "person_id": [e[0] for e in EPISODES], "episode_concept_id": 32531,
            "episode_start_date": date_column([e[2] for e in EPISODES]),
            "episode_end_date": date_column([e[3] for e in EPISODES]),
            "episode_number": [e[1] for e in EPISODES]}))
    if observation:
        write("observation_period", pd.DataFrame({
            "observation_period_id": range(1, len(OBSERVATION) + 1),
            "person_id": [o[0] for o in OBSERVATION],
            "observation_period_start_date": date_column([o[1] for o in OBSERVATION]),
            "observation_period_end_date": date_column([o[2] for o in OBSERVATION]),
            "period_type_concept_id": 32817}))
    return folder


def read_view(folder: Path, view: str = "treatment_episodes") -> tuple[pd.DataFrame, dict]:
    con = duckdb.connect(":memory:")
    try:
        name = register_omop(con, folder, lambda sql: con.execute(sql).fetchall(),
                             RuntimeError, view)
        types = {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()}
        return con.execute(f"SELECT * FROM {name}").df(), types
    finally:
        con.close()


def as_rows(frame: pd.DataFrame) -> list[Row]:
    rows = []
    for r in frame.itertuples(index=False):
        assert r.indication == INDICATION[r.pseudonym]
        rows.append((r.pseudonym, r.product, r.line, (r.start_date.date() - DAY0).days,
                     (r.end_date.date() - DAY0).days, int(r.duration_days), bool(r.censored),
                     int(r.time_to_next_treatment_days), bool(r.next_treatment_censored)))
    return sorted(rows)


@pytest.mark.parametrize("episodes,observation,expected", [
    (False, False, DERIVED_CUTOFF), (False, True, DERIVED_OBSERVED),
    (True, False, EPISODES_CUTOFF), (True, True, EPISODES_OBSERVED),
], ids=["derived-cutoff", "derived-observed", "episodes-cutoff", "episodes-observed"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_episodes_as_worked_out_by_hand(tmp_path: Path, episodes: bool, observation: bool,
                                        expected: list[Row], fmt: str) -> None:
    folder = write_omop(tmp_path / "omop", episodes=episodes, observation=observation,
                        fmt=fmt)
    frame, types = read_view(folder)
    assert tuple(frame.columns) == EPISODE_COLUMNS
    assert types == {"pseudonym": "VARCHAR", "product": "VARCHAR", "indication": "VARCHAR",
                     "line": "VARCHAR", "start_date": "DATE", "end_date": "DATE",
                     "duration_days": "BIGINT", "censored": "BOOLEAN",
                     "time_to_next_treatment_days": "BIGINT",
                     "next_treatment_censored": "BOOLEAN"}
    assert as_rows(frame) == sorted(expected)


def test_lines_agree_with_the_treatments_view(tmp_path: Path) -> None:
    """One episode row per treatments row, except that lines 3 and 4 of one product are one
    "3+" row there and two episodes here."""
    for episodes, extra in ((False, 1), (True, 0)):  # with episodes p6 has one line
        folder = write_omop(tmp_path / f"omop{episodes}", episodes=episodes, observation=True)
        treatments, _ = read_view(folder, "treatments")
        frame, _ = read_view(folder)
        keys = ["pseudonym", "product", "indication", "line"]
        firsts = frame.groupby(keys, as_index=False)["start_date"].min()
        assert sorted(map(tuple, firsts.to_numpy().tolist())) == sorted(
            map(tuple, treatments[[*keys, "start_date"]].to_numpy().tolist()))
        assert len(frame) == len(treatments) + extra


def dataset(folder: Path, **fields: object) -> DatasetConfig:
    return DatasetConfig(name="treatment_episodes", omop=folder, **fields)  # type: ignore[arg-type]


def table(folder: Path, measure: Measure = Measure("count"), **fields: object) -> np.ndarray:
    req = TableRequest(party="hospital_a", dataset="treatment_episodes",
                       group_by=("product", "line"),
                       categories=(("product", PRODUCTS), ("line", LINES)), measure=measure,
                       **fields)  # type: ignore[arg-type]
    return compute_local_table(dataset(folder), req).values.reshape(3, 3)


def test_bounds_filters_and_windows_apply_to_the_view(tmp_path: Path) -> None:
    folder = write_omop(tmp_path / "omop", episodes=False, observation=False)
    # Rows per product (osimertinib, durvalumab, olaparib) and line (1, 2, 3+), from
    # DERIVED_CUTOFF: p6's two "3+" episodes of osimertinib count twice.
    assert table(folder).tolist() == [[2, 0, 2], [2, 1, 0], [4, 1, 0]]
    # At most one row per person: the first in the order of (product, line) as text.
    one = table(folder, person_key="pseudonym", max_rows_per_person=1)
    assert one.tolist() == [[1, 0, 0], [2, 1, 0], [3, 0, 0]]
    ovarian = table(folder, filters=(("indication", ("ovarian",)),))
    assert ovarian.tolist() == [[0, 0, 0], [1, 0, 0], [2, 0, 0]]  # p5, p7
    window = Window("start_date", iso(590), iso(610))
    assert table(folder, window=window).tolist() == [[0, 0, 0], [0, 0, 0], [2, 0, 0]]
    censored = table(folder, filters=(("censored", ("true",)),))
    assert censored.tolist() == [[1, 0, 0], [0, 0, 0], [1, 0, 0]]  # p1, p4
    # duration_days is an integer column: sums and clipping work on it.
    days = table(folder, Measure("sum", "duration_days"), clip=Clip(0, 365))
    assert days.tolist() == [[365 + 30, 0, 30 + 30], [64 + 57, 29, 0],
                             [29 + 29 + 56 + 56, 56, 0]]


def test_one_row_per_person_from_the_view(tmp_path: Path) -> None:
    folder = write_omop(tmp_path / "omop", episodes=False, observation=False)
    req = PersonRequest(party="hospital_a", dataset="treatment_episodes", key="pseudonym",
                        by=("line",), categories=(("line", LINES),),
                        reduce=Reduce("start_date", "last"))
    got = compute_person_rows(dataset(folder), req)
    # The latest episode of each person: p2's line 2, p6's second "3+", p7's olaparib.
    assert got.ids == ["p1", "p2", "p3", "p4", "p5", "p6", "p7"]
    assert got.cells.tolist() == [0, 1, 0, 0, 0, 2, 0]


PARTY = """
name = "hospital_a"
listen = "127.0.0.1:7001"
[tls]
ca = "ca.pem"
cert = "a.pem"
key = "a.key"
[signing]
key = "a.sign.key"
[audit]
log = "a.jsonl"
[datasets.{name}]
{fields}
[policy]
coordinators = ["coordinator"]
usecases = ["u"]
"""


def party_dataset(tmp_path: Path, name: str, fields: str) -> DatasetConfig:
    path = tmp_path / "party.toml"
    path.write_text(PARTY.format(name=name, fields=fields))
    return load_party_config(path).datasets[name]


def test_the_view_comes_from_omop_view_or_the_dataset_name(tmp_path: Path) -> None:
    omop = 'omop = "omop"'
    assert party_dataset(tmp_path, "treatment_episodes", omop).view == "treatment_episodes"
    assert party_dataset(tmp_path, "treatments", omop).view == "treatments"
    assert party_dataset(tmp_path, "oncology", omop).view == "treatments"  # as before
    named = party_dataset(tmp_path, "durations", f'{omop}\nomop_view = "treatment_episodes"')
    assert named.view == "treatment_episodes" and named.format == "omop"
    # What the party commits to in its audit log tells the views apart.
    assert named.definition().endswith("omop view=treatment_episodes")
    assert party_dataset(tmp_path, "treatments", omop).definition() == \
        f"omop:{tmp_path / 'omop'}"


@pytest.mark.parametrize("fields,message", [
    ('omop = "omop"\nomop_view = "episodes"',
     "datasets.x.omop_view: expected one of treatments, treatment_episodes, got 'episodes'"),
    ('path = "x.csv"\nomop_view = "treatment_episodes"',
     "datasets.x.omop_view: omop_view is only for a folder of OMOP CDM tables"),
    ('omop = "omop"\nomop_view = 1', "datasets.x.omop_view: expected a string"),
])
def test_a_bad_omop_view_names_the_file_and_field(tmp_path: Path, fields: str,
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        party_dataset(tmp_path, "x", fields)
    assert str(tmp_path / "party.toml") in str(err.value)


def test_the_connector_reads_the_configured_view(tmp_path: Path) -> None:
    folder = write_omop(tmp_path / "omop", episodes=True, observation=True)
    req = TableRequest(party="hospital_a", dataset="durations", group_by=("line",),
                       categories=(("line", LINES),), measure=Measure("sum", "duration_days"))
    config = DatasetConfig(name="durations", omop=folder, omop_view="treatment_episodes")
    assert compute_local_table(config, req).values.tolist() == [
        720 + 29 + 29 + 56 + 29 + 280 + 57 + 56, 64, 56]
    # The treatments view has no such column; the error names it.
    with pytest.raises(DataError, match="duration_days"):
        compute_local_table(DatasetConfig(name="durations", omop=folder), req)
