"""Parties whose data lives in CSV, Parquet and PostgreSQL; bad data at any one of them
fails the job with an error naming party, dataset and column, aborts it everywhere and
releases nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mpc.config.spec import parse_spec
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from mpc.synth import generate_treatments
from tests.conftest import Harness, start_federation
from tests.helpers import plaintext_release, spec_text
from tests.pg import Postgres

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
CASES = ["treatments", "nulls", "unknown", "wrongtype", "empty", "badquery"]


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("baddata")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=300, seed=13)
    frames = {p: pd.read_csv(files[p], dtype=str).assign(cycles=lambda d: d.cycles.astype(int))
              for p in PARTIES}
    a, b = root / "data" / "hospital_a", root / "data" / "hospital_b"
    # hospital_a: CSV files; one with a product code outside the categories
    frames["hospital_a"].assign(product=lambda d: d["product"].where(
        d.index % 50 != 7, "nivolumab")).to_csv(a / "unknown.csv", index=False)
    # hospital_b: Parquet; one with missing lines, one with no rows
    frames["hospital_b"].to_parquet(b / "treatments.parquet")
    frames["hospital_b"].assign(line=lambda d: d.line.where(d.index % 40 != 3, None)) \
        .to_parquet(b / "nulls.parquet")
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
        setups[party] = PartySetup(datasets, [f"use-{case}" for case in CASES])
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


@pytest.mark.parametrize("case,party,column,phrase", [
    ("nulls", "hospital_b", "line", "has missing (null) values"),
    ("unknown", "hospital_a", "product", "has values outside the declared categories"),
    ("wrongtype", "hospital_c", "cycles", "must be an integer column"),
    ("empty", "hospital_b", None, "dataset has no rows"),
    ("badquery", "hospital_c", None, "query failed"),
])
def test_bad_data_fails_the_job_everywhere(harness: Harness, case: str, party: str,
                                           column: str | None, phrase: str) -> None:
    measure = "sum:cycles" if case == "wrongtype" else "count"
    with pytest.raises(JobFailed) as failed:
        harness.run(spec_text(f"use-{case}", PARTIES, dataset=case, measure=measure))
    cause = failed.value.cause
    assert failed.value.party == party
    assert f"dataset '{case}'" in cause and phrase in cause
    if column:
        assert f"column '{column}'" in cause
    assert "nivolumab" not in cause  # no data values in what the coordinator sees
    harness.assert_aborted_everywhere(failed.value.job_id)
    assert harness.run(spec_text("use-treatments", PARTIES, dataset="treatments")).table


