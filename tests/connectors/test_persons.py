"""Person-level rows from CSV, Parquet, SQLite, PostgreSQL and OMOP equal a pandas reference."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from mpc.config.party import DatasetConfig
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
    """The reference: sort by the order and the `by` columns, keep each key's first/last."""
    if req.reduce is not None:
        df = df.sort_values([req.reduce.order_by, *req.by], kind="stable")
        df = df.drop_duplicates(req.key, keep=req.reduce.keep)
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


def test_several_rows_per_person_need_a_reduce_rule(tmp_path: Path, writer) -> None:
    df = make_frame()
    with pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, df), request())
    text = assert_names(info.value, "pseudonym")
    assert "has several rows per person; the spec needs a reduce rule" in text
    assert not any(key in text for key in df.pseudonym)
    assert not any(ch.isdigit() for ch in text)  # no count of duplicated persons


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
    with pytest.raises(ValueError, match="first"):
        Reduce("line", "middle")
    with pytest.raises(ValueError, match="categories"):
        request(("product", "line"), categories=(("line", LINES), ("product", PRODUCTS)))


@pytest.mark.parametrize("column", ["pseudonym", "line", "start_date"])
def test_nulls_refused(tmp_path: Path, writer, column: str) -> None:
    df = make_frame()
    df.loc[7, column] = None
    with pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, df), request(reduce=Reduce("start_date", "first")))
    assert "has missing (null) values" in assert_names(info.value, column)


def test_values_outside_categories_reveal_nothing(tmp_path: Path, writer, caplog) -> None:
    df = make_frame()
    # On a row the reduce rule does not keep: the categories bind every row, as in tables.
    ordered = df.sort_values(["start_date", "product", "line"], kind="stable")
    df.loc[ordered.index[ordered.pseudonym.duplicated()][0], "product"] = "pembrolizumab"
    with caplog.at_level(logging.WARNING), pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, df), request(reduce=Reduce("start_date", "first")))
    text = assert_names(info.value, "product")
    assert "outside the declared categories" in text
    assert "pembrolizumab" not in text and not any(ch.isdigit() for ch in text)
    assert "pembrolizumab" in caplog.text  # logged locally for the party's own operator


@pytest.mark.parametrize("column", ["pseudonym", "line", "start_date"])
def test_missing_column(tmp_path: Path, writer, column: str) -> None:
    df = make_frame().drop(columns=[column])
    with pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, df), request(reduce=Reduce("start_date", "last")))
    text = assert_names(info.value, column)
    assert "column not found (available:" in text and "product" in text


def test_empty_dataset(tmp_path: Path, writer) -> None:
    with pytest.raises(DataError) as info:
        compute_person_rows(writer(tmp_path, make_frame().iloc[:0]), request())
    assert "dataset has no rows" in assert_names(info.value, None)


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

