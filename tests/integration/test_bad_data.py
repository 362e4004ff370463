"""Parties whose data lives in CSV, Parquet and PostgreSQL. Rows that do not fit the spec
(values outside the categories, nulls) and an empty dataset never fail a job: the rows are
left out and the release equals the plaintext without them. A dataset that is broken in
itself (a column of the wrong type, a failing query) fails the job with an error naming
party, dataset and column, aborts it everywhere and releases nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mpc.config.spec import parse_spec
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from mpc.synth import generate_treatments
from tests.conftest import TEST_BOUNDS, Harness, start_federation
from tests.helpers import plaintext_release, plaintext_release_frames, spec_text
from tests.pg import Postgres

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
CASES = ["treatments", "nulls", "unknown", "wrongtype", "empty", "badquery"]


def with_unknown_products(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(product=df["product"].where(df.index % 50 != 7, "nivolumab"))


def with_missing_lines(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(line=df.line.where(df.index % 40 != 3, None))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("baddata")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=300, seed=13)
    frames = {p: pd.read_csv(files[p], dtype=str).assign(cycles=lambda d: d.cycles.astype(int))
              for p in PARTIES}
    a, b = root / "data" / "hospital_a", root / "data" / "hospital_b"
    # hospital_a: CSV files; one with a product code outside the categories
    with_unknown_products(frames["hospital_a"]).to_csv(a / "unknown.csv", index=False)
    # hospital_b: Parquet; one with missing lines, one with no rows
    frames["hospital_b"].to_parquet(b / "treatments.parquet")
    with_missing_lines(frames["hospital_b"]).to_parquet(b / "nulls.parquet")
    frames["hospital_b"].head(0).to_parquet(b / "empty.parquet")
    # hospital_c: its warehouse is PostgreSQL
    table = "treatments_" + uuid.uuid4().hex[:8]
    engine = sa.create_engine(postgres.url)
    frames["hospital_c"].to_sql(table, engine, index=False)
    frames["hospital_c"].assign(cycles=lambda d: d.cycles.astype(str) + " cycles") \
        .to_sql(table + "_text", engine, index=False)
    engine.dispose()
    query = f"SELECT * FROM {table}"
    good = {"hospital_a": {"path": str(files["hospital_a"])},
            "hospital_b": {"path": str(b / "treatments.parquet")},
            "hospital_c": {"url": postgres.url, "query": query}}
    bad = {"nulls": ("hospital_b", {"path": str(b / "nulls.parquet")}),
           "unknown": ("hospital_a", {"path": str(a / "unknown.csv")}),
           "wrongtype": ("hospital_c", {"url": postgres.url, "query": f"{query}_text"}),
           "empty": ("hospital_b", {"path": str(b / "empty.parquet")}),
           "badquery": ("hospital_c", {"url": postgres.url, "query": "SELECT * FROM nowhere"})}
    setups = {}
    for party in PARTIES:
        datasets = {case: good[party] for case in CASES}
        for case, (owner, source) in bad.items():
            if owner == party:
                datasets[case] = source
        setups[party] = PartySetup(datasets, [f"use-{case}" for case in CASES],
                                   bounds={case: TEST_BOUNDS for case in CASES})
    fed = start_federation(root / "fed", files, [], setups=setups)
    truth = {"hospital_a": files["hospital_a"], "hospital_b": files["hospital_b"],
             "hospital_c": root / "c.csv"}
    frames["hospital_c"].to_csv(truth["hospital_c"], index=False)
    try:
        yield Harness(fed, truth)
    finally:
        fed.stop()


def test_csv_parquet_and_postgres_parties_together(harness: Harness) -> None:
    text = spec_text("use-treatments", PARTIES, dataset="treatments", measure="sum:cycles",
                     min_cell=20)
    outcome = harness.run(text)
    keep, value, _ = plaintext_release(harness.files, parse_spec(text), outcome.rules)
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)


@pytest.mark.parametrize("case,party,change", [
    ("nulls", "hospital_b", with_missing_lines),
    ("unknown", "hospital_a", with_unknown_products),
    ("empty", "hospital_b", lambda df: df.head(0)),
])
def test_rows_that_do_not_fit_are_left_out_not_failed(harness: Harness, case: str, party: str,
                                                      change: Any) -> None:
    """Failing here would tell the coordinator that some row in its scope is odd."""
    text = spec_text(f"use-{case}", PARTIES, dataset=case)
    outcome = harness.run(text)
    frames = {p: pd.read_csv(harness.files[p], dtype=str) for p in PARTIES}
    kept = change(frames[party])
    kept = kept[kept["product"].isin(["osimertinib", "durvalumab", "olaparib"])
                & kept.line.notna()]
    assert len(kept) < len(frames[party])
    frames[party] = kept
    keep, value, _ = plaintext_release_frames(frames, parse_spec(text), outcome.rules)
    assert outcome.table is not None
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)
    log = (harness.fed.service_logs / f"{party}.log").read_text()
    assert "left out" in log or case == "empty"


@pytest.mark.parametrize("case,party,column,phrase", [
    ("wrongtype", "hospital_c", "cycles", "must be an integer column"),
    ("badquery", "hospital_c", None, "query failed"),
])
def test_a_broken_dataset_fails_the_job_everywhere(harness: Harness, case: str, party: str,
                                                   column: str | None, phrase: str) -> None:
    measure = "sum:cycles" if case == "wrongtype" else "count"
    with pytest.raises(JobFailed) as failed:
        harness.run(spec_text(f"use-{case}", PARTIES, dataset=case, measure=measure))
    cause = failed.value.cause
    assert failed.value.party == party
    assert f"dataset '{case}'" in cause and phrase in cause
    if column:
        assert f"column '{column}'" in cause
    assert not re.search(r"\d+ cycles", cause)  # no data values, only the column's name
    harness.assert_aborted_everywhere(failed.value.job_id)
    assert harness.run(spec_text("use-treatments", PARTIES, dataset="treatments")).table
