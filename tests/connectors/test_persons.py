"""Person-level rows from CSV, Parquet, SQLite, PostgreSQL and OMOP equal a pandas reference."""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mpc.config.party import DatasetConfig
from mpc.config.spec import Window
from mpc.connectors.omop import register_treatments
from mpc.connectors.persons import PersonRequest, PersonRows, Reduce, compute_person_rows
from mpc.errors import DataError
from mpc.synth.omop import INDICATIONS, LINES, generate_federation
from tests.connectors.test_table import WRITERS, postgres_writer, write_sqlite
from tests.pg import Postgres

PRODUCTS = ("osimertinib", "durvalumab", "olaparib")
CATEGORIES = (("product", PRODUCTS), ("line", LINES))


@pytest.fixture(params=[*WRITERS, "postgres"])
def writer(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "postgres":
        return postgres_writer(request.getfixturevalue("postgres"))
    return WRITERS[request.param]


def make_frame(seed: int = 5, n: int = 400) -> pd.DataFrame:
    """Several rows for most persons; few distinct dates and cycles, so orderings tie."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "pseudonym": [f"p{i:03d}" for i in rng.integers(0, 120, n)],
        "product": rng.choice(["osimertinib", "durvalumab"], n),  # olaparib cells stay empty
        "line": rng.choice(list(LINES), n, p=[0.6, 0.35, 0.05]),
        "start_date": pd.Timestamp("2024-01-01") + pd.to_timedelta(
            rng.integers(0, 20, n), unit="D"),
        "cycles": rng.integers(1, 31, n).astype("int64"),  # 10 < 9 as text: tests the order
    }).assign(start_date=lambda d: d.start_date.dt.strftime("%Y-%m-%d"))


def request(by: tuple[str, ...] = ("product", "line"), reduce: Reduce | None = None,
            categories: tuple[tuple[str, tuple[str, ...]], ...] | None = None
            ) -> PersonRequest:
    if categories is None:
        categories = tuple(c for c in CATEGORIES if c[0] in by)
    return PersonRequest(party="hospital_a", dataset="treatments", key="pseudonym", by=by,
                         categories=categories, reduce=reduce)


def expected(df: pd.DataFrame, req: PersonRequest) -> PersonRows:
    """The reference: rows with a null key or `by` values outside the categories left out,
    then sort by the order and the `by` columns (a null ordering value never preferred),
    keep each key's first/last; without a rule, the first in `by` order."""
    df = df[df[req.key].notna()]
    for column, values in req.categories:
        df = df[df[column].astype(str).isin(values) & df[column].notna()]
    if req.reduce is not None:
        keep = req.reduce.keep
        df = df.sort_values([req.reduce.order_by, *req.by], kind="stable",
                            na_position="last" if keep == "first" else "first")
        df = df.drop_duplicates(req.key, keep=keep)
    elif req.by:
        df = df.sort_values(list(req.by), kind="stable").drop_duplicates(req.key)
    df = df.sort_values(req.key)
    combos = list(itertools.product(*(values for _, values in req.categories)))
    where = {combo: i for i, combo in enumerate(combos)}
    cells = [where[tuple(str(v) for v in row)] for row in df[list(req.by)].itertuples(
        index=False)] if req.by else [0] * len(df)
    return PersonRows(ids=[str(k) for k in df[req.key]],
                      cells=np.array(cells, dtype=np.int64))


def assert_equal(got: PersonRows, want: PersonRows) -> None:
    assert got.cells.dtype == np.int64
    assert got.ids == want.ids
    np.testing.assert_array_equal(got.cells, want.cells)


def assert_names(err: DataError, column: str | None) -> str:
    text = str(err)
    assert "hospital_a" in text and "treatments" in text
    if column is not None:
        assert f"'{column}'" in text and err.column == column
    return text


@pytest.mark.parametrize("keep", ["first", "last"])
@pytest.mark.parametrize("order_by", ["start_date", "cycles"])
def test_reduce_matches_pandas(tmp_path: Path, writer, keep: str, order_by: str) -> None:
    df = make_frame()
    req = request(reduce=Reduce(order_by, keep))
    got = compute_person_rows(writer(tmp_path, df), req)
    want = expected(df, req)
    assert len(got.ids) == df.pseudonym.nunique() < len(df)
    assert_equal(got, want)


def test_first_and_last_differ(tmp_path: Path) -> None:
    df = make_frame()
    dataset = WRITERS["csv"](tmp_path, df)
    first = compute_person_rows(dataset, request(reduce=Reduce("cycles", "first")))
    last = compute_person_rows(dataset, request(reduce=Reduce("cycles", "last")))
    assert first.ids == last.ids and (first.cells != last.cells).any()


def test_cells_are_row_major_over_categories(tmp_path: Path, writer) -> None:
    df = pd.DataFrame({"pseudonym": ["c", "a", "b", "007"],
                       "product": ["olaparib", "osimertinib", "durvalumab", "durvalumab"],
                       "line": ["2", "3+", "1", "3+"]})
    dataset = writer(tmp_path, df)
    got = compute_person_rows(dataset, request())
    # product index * len(LINES) + line index, ids in key order, '007' kept as text
    assert got.ids == ["007", "a", "b", "c"]
    assert got.cells.tolist() == [1 * 3 + 2, 0 * 3 + 2, 1 * 3 + 0, 2 * 3 + 1]
    assert compute_person_rows(dataset, request(("line",))).cells.tolist() == [2, 2, 0, 1]
    empty_by = compute_person_rows(dataset, request(()))
    assert empty_by.ids == got.ids and empty_by.cells.tolist() == [0, 0, 0, 0]


def test_numeric_categories_compare_as_text(tmp_path: Path, writer) -> None:
    df = make_frame().drop_duplicates("pseudonym")
    df["year"] = np.where(np.arange(len(df)) % 3 == 0, 2023, 2024)
    req = request(("year", "product"), categories=(("year", ("2023", "2024", "2025")),
                                                   ("product", PRODUCTS)))
    assert_equal(compute_person_rows(writer(tmp_path, df), req), expected(df, req))


def test_without_a_reduce_rule_the_first_row_in_by_order_is_kept(tmp_path: Path,
                                                                  writer) -> None:
    """Several rows per person never fail the job (that would tell the coordinator)."""
    df = make_frame()
    assert df.pseudonym.duplicated().any()
    assert_equal(compute_person_rows(writer(tmp_path, df), request()), expected(df, request()))


def test_distinct_only_counts_each_key_once(tmp_path: Path, writer) -> None:
    df = make_frame()
    got = compute_person_rows(writer(tmp_path, df), request(()), distinct_only=True)
    assert got.ids == sorted(df.pseudonym.unique())
    assert got.cells.dtype == np.int64 and not got.cells.any()


def test_distinct_only_reads_keys_only() -> None:
    dataset = DatasetConfig(name="treatments", path=Path("unused.csv"))
    with pytest.raises(ValueError, match="no `by` columns"):
        compute_person_rows(dataset, request(), distinct_only=True)


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="categories"):
        request(("product", "line"), categories=(("line", LINES), ("product", PRODUCTS)))


@pytest.mark.parametrize("keep", ["first", "last"])
@pytest.mark.parametrize("column", ["pseudonym", "line", "start_date"])
def test_nulls_are_left_out_or_sorted_last(tmp_path: Path, writer, column: str,
                                           keep: str, caplog) -> None:
    """A null key or attribute leaves the row out; a null ordering value is never the one
    kept while the person has another row. Neither fails the job."""
    df = make_frame()
    first = df.sort_values(["start_date", "product", "line"], kind="stable").index[0]
    df.loc[first, column] = None
    req = request(reduce=Reduce("start_date", keep))
    with caplog.at_level(logging.WARNING):
        got = compute_person_rows(writer(tmp_path, df), req)
    assert_equal(got, expected(df, req))
    if column != "start_date":
        assert "1 rows in this job's scope are left out" in caplog.text


def test_values_outside_categories_are_left_out(tmp_path: Path, writer, caplog) -> None:
    df = make_frame()
    ordered = df.sort_values(["start_date", "product", "line"], kind="stable")
    df.loc[ordered.index[:3], "product"] = "pembrolizumab"
    req = request(reduce=Reduce("start_date", "first"))
    with caplog.at_level(logging.WARNING):
        got = compute_person_rows(writer(tmp_path, df), req)
    assert_equal(got, expected(df, req))
    assert "3 rows in this job's scope are left out" in caplog.text


@pytest.mark.parametrize("column", ["pseudonym", "line", "start_date"])
def test_missing_column(tmp_path: Path, writer, column: str) -> None:
    df = make_frame().drop(columns=[column])
    with pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, df), request(reduce=Reduce("start_date", "last")))
    text = assert_names(info.value, column)
    assert "column not found (available:" in text and "product" in text


def test_empty_scope_is_an_empty_list(tmp_path: Path, writer) -> None:
    got = compute_person_rows(writer(tmp_path, make_frame().iloc[:0]), request())
    assert got.ids == [] and len(got.cells) == 0


def test_window_and_filters_apply_to_distinct_persons(tmp_path: Path, writer) -> None:
    df = make_frame()
    req = replace(request(()), window=Window("start_date", "2024-01-05", "2024-01-12"),
                  filters=(("line", ("1", "2")),))
    got = compute_person_rows(writer(tmp_path, df), req, distinct_only=True)
    kept = df[(df.start_date >= "2024-01-05") & (df.start_date < "2024-01-12")
              & df.line.isin(["1", "2"])]
    assert 0 < len(set(kept.pseudonym)) < df.pseudonym.nunique()
    assert got.ids == sorted(set(kept.pseudonym))


def test_list_bound_is_checked_on_the_whole_dataset(tmp_path: Path, writer) -> None:
    """Over the bound fails every job alike, however small the scope the spec asks for;
    the message holds no count."""
    df = make_frame()
    persons = df.pseudonym.nunique()
    tiny = replace(request(()), filters=(("line", ("3+",)),), max_persons=persons - 1)
    with pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, df), tiny, distinct_only=True)
    text = assert_names(info.value, "pseudonym")
    assert "list bound" in text and str(persons) not in text
    (tmp_path / "again").mkdir()
    ok = replace(tiny, max_persons=persons)
    assert compute_person_rows(writer(tmp_path / "again", df), ok, distinct_only=True).ids


@pytest.mark.parametrize("name", ["gone.csv", "gone.parquet", "gone.db"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    if name.endswith(".db"):
        dataset = DatasetConfig(name="treatments", url=f"sqlite:///{path}", query="SELECT 1")
    else:
        dataset = DatasetConfig(name="treatments", path=path)
    with pytest.raises(DataError) as info:
        compute_person_rows(dataset, request())
    assert f"file not found: {name}" in assert_names(info.value, None)
    assert not path.exists()


def test_failing_query(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dataset = write_sqlite(tmp_path, make_frame(), query="SELECT * FROM no_such_table")
    with pytest.raises(DataError) as info:
        compute_person_rows(dataset, request())
    text = assert_names(info.value, None)
    assert "query failed (OperationalError" in text and "no_such_table" not in text
    assert "no such table: no_such_table" in caplog.text


def test_postgres_reduces_where_the_data_lives(tmp_path: Path, postgres: Postgres) -> None:
    df = make_frame()
    dataset = postgres_writer(postgres)(tmp_path, df)
    assert dataset.query is not None
    table = dataset.query.rsplit(" ", 1)[-1]
    req = request(reduce=Reduce("start_date", "first"))
    assert_equal(compute_person_rows(dataset, req), expected(df, req))
    statements = [line for line in postgres.statements().splitlines() if table in line]
    assert any("ROW_NUMBER() OVER (PARTITION BY" in line for line in statements), statements


@pytest.fixture(scope="module")
def omop_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_federation(tmp_path_factory.mktemp("omop"), patients=600).hospitals


# hospital_a records treatment episodes; hospital_c has none, so its lines are derived.
@pytest.mark.parametrize("hospital", ["hospital_a", "hospital_c"])
def test_omop_first_line_per_person(omop_folders: dict[str, Path], hospital: str) -> None:
    folder = omop_folders[hospital]
    con = duckdb.connect(":memory:")
    try:
        view = register_treatments(con, folder, lambda sql: con.execute(sql).fetchall(),
                                   RuntimeError)
        df = con.execute(f"SELECT * FROM {view}").df()
    finally:
        con.close()
    assert df.pseudonym.duplicated().any()
    req = PersonRequest(party="hospital_a", dataset="treatments", key="pseudonym",
                        by=("indication", "line"),
                        categories=(("indication", INDICATIONS), ("line", LINES)),
                        reduce=Reduce("line", "first"))
    got = compute_person_rows(DatasetConfig(name="treatments", omop=folder), req)
    assert_equal(got, expected(df, req))
    assert len(got.ids) == df.pseudonym.nunique()

