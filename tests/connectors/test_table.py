"""Local tables from CSV, Parquet and SQLite equal a pandas groupby of the same rows."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mpc.config.bounds import Clip
from mpc.config.party import DatasetConfig
from mpc.config.spec import Measure, Window
from mpc.connectors import LocalTable, TableRequest, compute_local_table
from mpc.errors import DataError
from tests.pg import Postgres

PRODUCTS = ("osimertinib", "durvalumab", "olaparib")
LINES = ("1", "2", "3+")
CATEGORIES = (("product", PRODUCTS), ("line", LINES))
MEASURES = [Measure("count"), Measure("count_distinct", "pseudonym"), Measure("sum", "cycles")]


def make_frame(seed: int = 3, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "pseudonym": [f"p{i:03d}" for i in rng.integers(0, 120, n)],
        "product": rng.choice(["osimertinib", "durvalumab"], n),  # olaparib cells stay 0
        "line": rng.choice(list(LINES), n, p=[0.6, 0.35, 0.05]),
        "cycles": rng.integers(1, 31, n).astype("int64"),
        "dose": rng.random(n),
    })


def request(measure: Measure = MEASURES[0], categories=CATEGORIES) -> TableRequest:
    return TableRequest(party="hospital_a", dataset="treatments",
                        group_by=tuple(c for c, _ in categories), categories=categories,
                        measure=measure)


def expected(df: pd.DataFrame, req: TableRequest) -> LocalTable:
    keys = list(req.group_by)
    m = req.measure
    grouped = df.groupby(keys)
    if m.kind == "count":
        value = grouped.size()
    elif m.kind == "count_distinct":
        value = grouped[m.column].nunique()
    else:
        value = grouped[m.column].sum()
    rows = grouped.size()
    combos = list(itertools.product(*(vals for _, vals in req.categories)))
    if len(keys) == 1:  # pandas indexes a single key by its value, not a 1-tuple
        combos = [c[0] for c in combos]
    return LocalTable(
        values=np.array([int(value.get(c, 0)) for c in combos], dtype=np.int64),
        rows=np.array([int(rows.get(c, 0)) for c in combos], dtype=np.int64),
    )


def write_csv(tmp_path: Path, df: pd.DataFrame) -> DatasetConfig:
    path = tmp_path / "treatments.csv"
    df.to_csv(path, index=False)
    return DatasetConfig(name="treatments", path=path)


def write_parquet(tmp_path: Path, df: pd.DataFrame) -> DatasetConfig:
    path = tmp_path / "treatments.parquet"
    df.to_parquet(path, index=False)
    return DatasetConfig(name="treatments", path=path)


def write_sqlite(tmp_path: Path, df: pd.DataFrame, query: str = "SELECT * FROM treatments"
                 ) -> DatasetConfig:
    path = tmp_path / "warehouse.db"
    with sqlite3.connect(path) as con:
        df.to_sql("treatments", con, index=False)
    con.close()
    return DatasetConfig(name="treatments", url=f"sqlite:///{path}", query=query)


def postgres_writer(server: Postgres):  # type: ignore[no-untyped-def]
    """A fresh table on the session's real PostgreSQL server for every dataset."""
    def write(tmp_path: Path, df: pd.DataFrame, query: str | None = None) -> DatasetConfig:
        table = "treatments_" + uuid.uuid4().hex[:10]
        engine = sa.create_engine(server.url)
        df.to_sql(table, engine, index=False)
        engine.dispose()
        return DatasetConfig(name="treatments", url=server.url,
                             query=query or f"SELECT * FROM {table}")
    return write


WRITERS = {"csv": write_csv, "parquet": write_parquet, "sqlite": write_sqlite}


@pytest.fixture(params=[*WRITERS, "postgres"])
def writer(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "postgres":
        return postgres_writer(request.getfixturevalue("postgres"))
    return WRITERS[request.param]


def assert_equal(got: LocalTable, want: LocalTable) -> None:
    assert got.values.dtype == np.int64 and got.rows.dtype == np.int64
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.rows, want.rows)


def assert_names(err: DataError, column: str | None) -> str:
    text = str(err)
    assert "hospital_a" in text and "treatments" in text
    if column is not None:
        assert f"'{column}'" in text
        assert err.column == column
    return text


@pytest.mark.parametrize("measure", MEASURES, ids=str)
def test_matches_pandas_groupby(tmp_path: Path, writer, measure: Measure) -> None:
    df = make_frame()
    req = request(measure)
    got = compute_local_table(writer(tmp_path, df), req)
    assert got.values.shape == (len(PRODUCTS) * len(LINES),)
    assert_equal(got, expected(df, req))
    assert got.rows[PRODUCTS.index("olaparib") * len(LINES):][:len(LINES)].sum() == 0


def test_numeric_categories_compare_as_text(tmp_path: Path, writer) -> None:
    df = make_frame()
    df["year"] = np.where(np.arange(len(df)) % 3 == 0, 2023, 2024)
    cats = (("year", ("2023", "2024", "2025")), ("product", PRODUCTS))
    req = request(categories=cats)
    want = expected(df.assign(year=df["year"].astype(str)), req)
    assert_equal(compute_local_table(writer(tmp_path, df), req), want)


def test_single_group_column(tmp_path: Path, writer) -> None:
    df = make_frame()
    req = request(Measure("sum", "cycles"), categories=(("line", LINES),))
    assert_equal(compute_local_table(writer(tmp_path, df), req), expected(df, req))


def test_from_spec() -> None:
    from mpc.config.spec import parse_spec

    spec = parse_spec(b"""
name = "t"
kind = "aggregate"
parties = ["hospital_a", "hospital_b"]
[input]
dataset = "treatments"
[aggregate]
group_by = ["product", "line"]
measure = "sum:cycles"
[categories]
product = ["osimertinib", "durvalumab", "olaparib"]
line = [1, 2, "3+"]
""")
    req = TableRequest.from_spec(spec, "hospital_a")
    assert req.group_by == ("product", "line")
    assert req.categories == CATEGORIES
    assert req.measure == Measure("sum", "cycles")
    assert req.dataset == "treatments" and req.party == "hospital_a"


@pytest.mark.parametrize("column", ["line", "cycles"])
def test_missing_column(tmp_path: Path, writer, column: str) -> None:
    df = make_frame().drop(columns=[column])
    with pytest.raises(DataError) as info:
        compute_local_table(writer(tmp_path, df), request(Measure("sum", "cycles")))
    text = assert_names(info.value, column)
    assert "column not found" in text and "pseudonym" in text


def test_null_in_group_column_is_left_out(tmp_path: Path, writer, caplog) -> None:
    """A null could be one person's row in a scope the coordinator chose: it must not fail
    the job (an oracle), so it is left out of every cell and reported locally."""
    df = make_frame()
    df.loc[5, "line"] = None
    with caplog.at_level(logging.WARNING):
        got = compute_local_table(writer(tmp_path, df), request())
    assert_equal(got, expected(df.drop(index=5), request()))
    assert "1 rows in this job's scope are left out" in caplog.text


def test_values_outside_categories_are_left_out(tmp_path: Path, writer, caplog) -> None:
    df = make_frame()
    df.loc[[3, 9, 17], "product"] = "pembrolizumab"
    with caplog.at_level(logging.WARNING):
        got = compute_local_table(writer(tmp_path, df), request())
    assert_equal(got, expected(df.drop(index=[3, 9, 17]), request()))
    assert "pembrolizumab" in caplog.text  # logged locally for the party's own operator
    assert "3 rows in this job's scope are left out" in caplog.text


def test_sum_needs_integer_column(tmp_path: Path, writer) -> None:
    """A column typed as non-integer is a fact of the dataset's schema, not of any row.
    SQLite types values, not columns: there each non-integer value is left out."""
    dataset = writer(tmp_path, make_frame())
    if writer is write_sqlite:
        got = compute_local_table(dataset, request(Measure("sum", "dose")))
        assert not got.values.any()
        return
    with pytest.raises(DataError) as info:
        compute_local_table(dataset, request(Measure("sum", "dose")))
    assert "must be an integer column" in assert_names(info.value, "dose")


def test_empty_scope_is_a_table_of_zeros(tmp_path: Path, writer) -> None:
    df = make_frame().iloc[:0]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    got = compute_local_table(writer(tmp_path / "a", df), request(Measure("sum", "cycles")))
    assert not got.values.any() and not got.rows.any()
    everything_filtered = replace(request(), filters=(("product", ("none-such",)),))
    got = compute_local_table(writer(tmp_path / "b", make_frame()), everything_filtered)
    assert not got.values.any() and not got.rows.any()


def test_contribution_bound_and_clipping_run_in_the_engine(tmp_path: Path, writer) -> None:
    """At most k rows per person (the first ones in group-value order) and each summed
    value clipped to the party's range, as pandas computes them."""
    df = make_frame()
    req = replace(request(Measure("sum", "cycles")), person_key="pseudonym",
                  max_rows_per_person=2, clip=Clip(3, 12))
    got = compute_local_table(writer(tmp_path, df), req)
    bounded = (df.sort_values(["product", "line", "cycles"], kind="stable")
               .groupby("pseudonym").head(2)
               .assign(cycles=lambda d: d.cycles.clip(3, 12)))
    assert len(bounded) < len(df)  # the bound does bite in this data
    assert_equal(got, expected(bounded, req))
    assert got.rows.sum() <= 2 * df.pseudonym.nunique()


def test_zero_byte_csv(tmp_path: Path) -> None:
    path = tmp_path / "treatments.csv"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="dataset has no rows"):
        compute_local_table(DatasetConfig(name="treatments", path=path), request())


@pytest.mark.parametrize("name", ["gone.csv", "gone.parquet", "gone.db"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".db"):
        dataset = DatasetConfig(name="treatments", url=f"sqlite:///{path}", query="SELECT 1")
    else:
        dataset = DatasetConfig(name="treatments", path=path)
    with pytest.raises(DataError) as info:
        compute_local_table(dataset, request())
    assert f"file not found: {name}" in assert_names(info.value, None)
    assert not path.exists()  # SQLite must not have created an empty database


def test_failing_query(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset = write_sqlite(tmp_path, make_frame(), query="SELECT * FROM no_such_table")
    with pytest.raises(DataError) as info:
        compute_local_table(dataset, request())
    text = assert_names(info.value, None)
    assert "query failed (OperationalError" in text and "worker log" in text
    # The database's own message (which can quote data) stays in the party's log.
    assert "no_such_table" not in text
    assert "no such table: no_such_table" in caplog.text


def test_query_with_where_and_semicolon(tmp_path: Path) -> None:
    df = make_frame()
    dataset = write_sqlite(tmp_path, df, query="SELECT * FROM treatments WHERE cycles > 10;\n")
    req = request(Measure("count_distinct", "pseudonym"))
    assert_equal(compute_local_table(dataset, req), expected(df[df.cycles > 10], req))


def test_sqlite_mixed_storage_in_sum_column(tmp_path: Path, caplog) -> None:
    """One stored value that is not an integer is left out rather than failing the job."""
    df = make_frame()
    dataset = write_sqlite(tmp_path, df)
    with sqlite3.connect(tmp_path / "warehouse.db") as con:
        con.execute("UPDATE treatments SET cycles = 2.5 WHERE rowid = 7")
    con.close()
    req = request(Measure("sum", "cycles"))
    with caplog.at_level(logging.WARNING):
        got = compute_local_table(dataset, req)
    assert_equal(got, expected(df.drop(index=6), req))  # rowid 7 is the 7th row
    assert "1 rows in this job's scope are left out" in caplog.text


def test_invalid_url_does_not_echo_it(tmp_path: Path) -> None:
    dataset = DatasetConfig(name="treatments", url="not a url s3cret", query="SELECT 1")
    with pytest.raises(DataError) as info:
        compute_local_table(dataset, request())
    assert "s3cret" not in str(info.value)


def test_postgres_counts_where_the_data_lives(postgres: Postgres) -> None:
    """The GROUP BY runs in PostgreSQL: the server's statement log shows it, and no
    statement fetches the party's rows."""
    table = "drug_exposure_" + uuid.uuid4().hex[:10]
    engine = sa.create_engine(postgres.url)
    with engine.begin() as con:
        con.execute(sa.text(
            f"CREATE TABLE {table} AS SELECT (ARRAY['osimertinib','durvalumab','olaparib'])"
            "[1 + i % 3] AS product, (ARRAY['1','2','3+'])[1 + i % 3] AS line, i AS person "
            "FROM generate_series(1, 200000) AS i"))
    engine.dispose()
    dataset = DatasetConfig(name="treatments", url=postgres.url,
                            query=f"SELECT product, line, person FROM {table}")
    req = TableRequest(party="hospital_a", dataset="treatments", group_by=("product", "line"),
                       categories=(("product", ("osimertinib", "durvalumab", "olaparib")),
                                   ("line", ("1", "2", "3+"))),
                       measure=Measure("count_distinct", "person"))
    table_counts = compute_local_table(dataset, req)
    assert table_counts.values.sum() == 200_000
    assert sorted(table_counts.values[table_counts.values > 0]) == [66666, 66667, 66667]
    statements = [line for line in postgres.statements().splitlines()
                  if table in line and "statement: SELECT" in line]
    assert any("GROUP BY" in line.upper() for line in statements), statements
    # Every statement aggregates or is limited: none fetches the party's rows.
    assert all(any(word in line.upper() for word in ("GROUP BY", "LIMIT", "SELECT COUNT("))
               for line in statements), statements


def test_window_and_filter_are_pushed_down(tmp_path: Path, writer) -> None:
    df = make_frame()
    df["start_date"] = pd.date_range("2023-10-01", periods=len(df), freq="D").strftime(
        "%Y-%m-%d")
    df["indication"] = np.random.default_rng(5).choice(["NSCLC", "SCLC", "breast"], len(df))
    dataset = writer(tmp_path, df)
    window = Window("start_date", "2024-01-01", "2024-04-01")
    req = TableRequest(party="hospital_a", dataset="treatments", group_by=("product", "line"),
                       categories=CATEGORIES,
                       measure=Measure("count"), window=window,
                       filters=(("indication", ("NSCLC", "SCLC")),))
    kept = df[(df.start_date >= "2024-01-01") & (df.start_date < "2024-04-01")
              & df.indication.isin(["NSCLC", "SCLC"])]
    assert 0 < len(kept) < len(df)
    assert_equal(compute_local_table(dataset, req), expected(kept, req))


def test_list_bound_fails_every_table_alike(tmp_path: Path, writer) -> None:
    """More persons than the party's own bound: the same error whatever the scope, and no
    count in it."""
    df = make_frame()
    persons = df.pseudonym.nunique()
    dataset = writer(tmp_path, df)
    for req in (request(), replace(request(), filters=(("product", ("olaparib",)),))):
        bounded = replace(req, person_key="pseudonym", max_persons=persons - 1)
        with pytest.raises(DataError) as info:
            compute_local_table(dataset, bounded)
        text = assert_names(info.value, "pseudonym")
        assert "more persons than its list bound" in text and str(persons) not in text
    at_bound = replace(request(), person_key="pseudonym", max_persons=persons)
    assert_equal(compute_local_table(dataset, at_bound), expected(df, request()))


def test_a_database_message_is_logged_without_the_values_it_quotes() -> None:
    from mpc.connectors.read_errors import engine_message

    class DataError(Exception):
        pass

    exc = DataError('invalid input syntax for type integer: "ZQX123"\n'
                    'DETAIL:  Key (pseudonym)=(p-0042) already exists.\n'
                    'CONTEXT:  COPY treatments, line 7: "p-0042,ZQX123"')
    text = engine_message(exc, query="SELECT * FROM treatments")
    assert text == 'DataError: invalid input syntax for type integer: "…"'
    other = DataError('relation "oncology_treatments" does not exist; near \'p-0042\'; '
                      'Key (pseudonym)=(p-0042)')
    text = engine_message(other, query='SELECT * FROM "oncology_treatments"')
    assert '"oncology_treatments"' in text  # the party's own query names it: kept
    assert "p-0042" not in text and "(…)=(…)" in text
