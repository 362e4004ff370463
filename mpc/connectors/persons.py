"""A party's person-level rows for record linkage: one row per person, read in its engine.

Each person comes back as their key (a pseudonym, as text) and the cell of the spec's
categories their attributes fall into. Where the dataset holds several rows per person, the
spec's reduce rule picks one inside the engine (a ROW_NUMBER window), so Python never sees
the other rows.

Errors follow the table connector (connectors/table.py): messages name the party, dataset
and column, never a data value or a count; offending category values go to the local log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mpc.config.party import DatasetConfig
from mpc.connectors.omop import register_treatments
from mpc.connectors.table import (
    _MAX_LOGGED_VALUES,
    _duckdb_source,
    _engine_error,
    _quote_ident,
)
from mpc.errors import DataError

log = logging.getLogger(__name__)

Run = Callable[[str], list[tuple[Any, ...]]]

_KEEP = ("first", "last")
_SEVERAL_ROWS = "has several rows per person; the spec needs a reduce rule"


@dataclass(frozen=True)
class Reduce:
    """Which of a person's rows to keep: the first or last one ordered by `order_by`."""

    order_by: str
    keep: str  # "first" or "last"

    def __post_init__(self) -> None:
        if self.keep not in _KEEP:
            raise ValueError(f"keep must be 'first' or 'last', not {self.keep!r}")


@dataclass(frozen=True)
class PersonRequest:
    """What one party must read: a key per person and the cell of their `by` values."""

    party: str
    dataset: str  # dataset name (for error messages)
    key: str  # the column identifying a person (a pseudonym)
    by: tuple[str, ...]  # attribute columns (may be empty)
    categories: tuple[tuple[str, tuple[str, ...]], ...]  # in `by` order, values as text
    reduce: Reduce | None = None

    def __post_init__(self) -> None:
        if tuple(column for column, _ in self.categories) != self.by:
            raise ValueError("categories must list the `by` columns, in order")

    def error(self, message: str, column: str | None = None) -> DataError:
        return DataError(self.party, self.dataset, message, column=column)


@dataclass(frozen=True)
class PersonRows:
    """One entry per person, in key order (the caller shuffles)."""

    ids: list[str]  # distinct keys, as text
    cells: np.ndarray  # int64, row-major index over the categories; zeros when `by` is empty


def compute_person_rows(dataset: DatasetConfig, request: PersonRequest, *,
                        distinct_only: bool = False) -> PersonRows:
    """One row per person of the party's dataset, reduced inside its engine.

    distinct_only: each key once, several rows per person allowed (overlap counting); the
    request then has no `by` columns and its reduce rule is not needed.
    """
    if distinct_only and request.by:
        raise ValueError("distinct_only reads keys only: give no `by` columns")
    if dataset.format == "sql":
        rows = _sql_rows(dataset, request, distinct_only)
    else:
        rows = _duckdb_rows(dataset, request, distinct_only)
    return _to_person_rows(rows, request)


def _engine_failure(request: PersonRequest, what: str, exc: BaseException) -> DataError:
    # table._engine_error reads only party, dataset and error(), which PersonRequest has.
    return _engine_error(request, what, exc)  # type: ignore[arg-type]


# --- engine-independent queries -------------------------------------------------------


def _read(request: PersonRequest, distinct_only: bool, src: str, available: Sequence[str],
          run: Run, quote: Callable[[str], str], as_text: Callable[[str], str]
          ) -> list[tuple[Any, ...]]:
    """Check the dataset against the request, then fetch (key, by...) per person.

    The same statements serve DuckDB and SQL databases: only quoting and the text cast
    differ, and ROW_NUMBER() OVER (...) runs on DuckDB, PostgreSQL and SQLite alike.
    """
    reduce = None if distinct_only else request.reduce
    needed = [request.key, *request.by] + ([reduce.order_by] if reduce else [])
    present = set(available)
    for column in needed:
        if column not in present:
            raise request.error(f"column not found (available: {', '.join(available)})",
                                column=column)
    if not run(f"SELECT 1 FROM {src} LIMIT 1"):
        raise request.error("dataset has no rows")

    # Nulls are refused rather than dropped: a missing key or ordering value would silently
    # lose (or arbitrarily reduce) a person.
    for column in [request.key] + ([reduce.order_by] if reduce else []):
        if run(f"SELECT 1 FROM {src} WHERE {quote(column)} IS NULL LIMIT 1"):
            raise request.error("has missing (null) values", column=column)

    key = as_text(quote(request.key))
    by = [as_text(quote(column)) for column in request.by]
    if by:
        # Every row must fit the categories, not only the ones the reduce rule keeps, as
        # in the aggregate path; only distinct combinations come back, never counts.
        _cells(request, run(f"SELECT DISTINCT {', '.join(by)} FROM {src}"))

    if distinct_only:
        return run(f"SELECT DISTINCT {key} FROM {src}")
    if reduce is None:
        if run(f"SELECT 1 FROM {src} GROUP BY {key} HAVING COUNT(*) > 1 LIMIT 1"):
            raise request.error(_SEVERAL_ROWS, column=request.key)
        return run(f"SELECT {', '.join([key, *by])} FROM {src}")

    # keep="last" is keep="first" over the reversed order, tie-breakers included, so it
    # takes the last row of the very order that "first" takes the first of.
    direction = "ASC" if reduce.keep == "first" else "DESC"
    order = ", ".join(f"{e} {direction}" for e in [quote(reduce.order_by), *by])
    outer = ", ".join(["person_key", *(f"by_{j}" for j in range(len(by)))])
    inner = ", ".join([f"{key} AS person_key", *(f"{e} AS by_{j}" for j, e in enumerate(by)),
                       f"ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {order}) AS person_row"])
    return run(f"SELECT {outer} FROM (SELECT {inner} FROM {src}) AS ranked "
               "WHERE person_row = 1")


def _cells(request: PersonRequest, by_rows: Iterable[Sequence[Any]]) -> np.ndarray:
    """Row-major cell index of each row's `by` values; refuse nulls and unknown values."""
    index = [{v: i for i, v in enumerate(values)} for _, values in request.categories]
    strides = []
    stride = 1
    for _, values in reversed(request.categories):
        strides.append(stride)
        stride *= len(values)
    strides.reverse()

    cells: list[int] = []
    nulls: set[int] = set()
    outside: dict[int, set[str]] = {}
    for row in by_rows:
        cell = 0
        for j, value in enumerate(row):
            if value is None:
                nulls.add(j)
            elif (pos := index[j].get(value)) is None:
                outside.setdefault(j, set()).add(value)
            else:
                cell += pos * strides[j]
        cells.append(cell)

    # The first offending column in `by` order; nulls before unknown values (as table.py).
    for j, column in enumerate(request.by):
        if j in nulls:
            raise request.error("has missing (null) values", column=column)
        if j in outside:
            shown = sorted(outside[j])[:_MAX_LOGGED_VALUES]
            log.warning("%s: dataset %r, column %r: values outside the declared categories, "
                        "e.g. %s", request.party, request.dataset, column, shown)
            raise request.error("has values outside the declared categories", column=column)
    return np.array(cells, dtype=np.int64)


def _to_person_rows(rows: list[tuple[Any, ...]], request: PersonRequest) -> PersonRows:
    # Sorted in Python, not in SQL: text ordering would follow each database's collation.
    rows = sorted(rows, key=lambda row: row[0])
    ids = [row[0] for row in rows]
    # Re-checked here because a live database can change between the checks and the read.
    if any(key is None for key in ids):
        raise request.error("has missing (null) values", column=request.key)
    if len(set(ids)) != len(ids):
        raise request.error(_SEVERAL_ROWS, column=request.key)
    if request.by:
        cells = _cells(request, (row[1:] for row in rows))
    else:
        cells = np.zeros(len(ids), dtype=np.int64)
    return PersonRows(ids=[str(key) for key in ids], cells=cells)


# --- CSV / Parquet / OMOP through DuckDB ----------------------------------------------


def _duckdb_rows(dataset: DatasetConfig, request: PersonRequest, distinct_only: bool
                 ) -> list[tuple[Any, ...]]:
    import duckdb

    if dataset.format != "omop":
        assert dataset.path is not None
        path = Path(dataset.path)
        if not path.exists():
            raise request.error(f"file not found: {path.name}")
        if path.is_file() and path.stat().st_size == 0:
            raise request.error("dataset has no rows")

    con = duckdb.connect(":memory:")
    try:
        def run(sql: str) -> list[tuple[Any, ...]]:
            try:
                return con.execute(sql).fetchall()
            except duckdb.Error as exc:
                raise _engine_failure(request, "cannot read the file", exc) from exc

        if dataset.format == "omop":
            assert dataset.omop is not None
            raw = typed = register_treatments(con, Path(dataset.omop), run, request.error)
        else:
            # Key and category columns are read as text, so '007' stays '007'.
            raw = _duckdb_source(dataset)
            typed = _duckdb_source(dataset, [request.key, *request.by])
        available = [str(row[0]) for row in run(f"DESCRIBE SELECT * FROM {raw}")]
        return _read(request, distinct_only, typed, available, run, _quote_ident,
                     lambda e: f"CAST({e} AS VARCHAR)")
    finally:
        con.close()


# --- SQL databases through SQLAlchemy -------------------------------------------------


def _sql_rows(dataset: DatasetConfig, request: PersonRequest, distinct_only: bool
              ) -> list[tuple[Any, ...]]:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    assert dataset.url is not None and dataset.query is not None
    # Never put the URL into a message: it may hold a password.
    try:
        url = sa.make_url(dataset.url)
        engine = sa.create_engine(url)
    except sa_exc.ArgumentError as exc:
        raise request.error("invalid database URL") from exc
    except (sa_exc.NoSuchModuleError, ImportError) as exc:
        raise _engine_failure(request, "cannot load the database driver", exc) from exc

    dialect = engine.dialect
    # SQLite would silently create an empty database file where the configured one is missing.
    if dialect.name == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:") and not Path(url.database).exists():
        raise request.error(f"file not found: {Path(url.database).name}")

    query = dataset.query.strip().rstrip(";").strip()
    src = f"({query}) AS src"

    def as_text(expr: str) -> str:
        return str(sa.cast(sa.literal_column(expr), sa.String()).compile(dialect=dialect))

    try:
        try:
            connection = engine.connect()
        except sa_exc.DBAPIError as exc:
            raise _engine_failure(request, "cannot connect to the database", exc) from exc
        with connection:
            # The raw DB-API cursor: no parameter parsing of the party's query text.
            cursor = connection.connection.cursor()
            try:
                def run(sql: str) -> list[tuple[Any, ...]]:
                    try:
                        cursor.execute(sql)
                        return [tuple(r) for r in cursor.fetchall()]
                    except dialect.loaded_dbapi.Error as exc:
                        raise _engine_failure(request, "query failed", exc) from exc

                run(f"SELECT * FROM {src} LIMIT 0")
                available = [str(d[0]) for d in cursor.description or ()]
                return _read(request, distinct_only, src, available, run,
                             dialect.identifier_preparer.quote, as_text)
            finally:
                cursor.close()
    finally:
        engine.dispose()
