"""A party's local table: one count (or sum) per category cell, computed in its own engine.

Every query here aggregates inside the engine (DuckDB for files, the party's database
through SQLAlchemy), so only one row per group ever reaches Python.

Error messages travel to the coordinator, which must learn nothing about the data: they
name the party, dataset and column, never a data value or a count of rows. Offending
values are logged locally only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from mpc.config.party import DatasetConfig
from mpc.config.spec import Measure, UseCaseSpec, Window
from mpc.connectors.omop import register_treatments
from mpc.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_MAX_LOGGED_VALUES = 10
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_DUCKDB_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT",
     "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
# PostgreSQL type OIDs of int2, int4, int8 (what psycopg reports as type_code).
_POSTGRES_INTEGER_OIDS = frozenset({21, 23, 20})


@dataclass(frozen=True)
class TableRequest:
    """What one party must count: the spec's public categories and measure."""

    party: str
    dataset: str  # dataset name (for error messages)
    group_by: tuple[str, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...]  # in group_by order, values as text
    measure: Measure
    window: Window | None = None  # only rows in this period
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()  # only rows with these values

    @classmethod
    def from_spec(cls, spec: UseCaseSpec, party: str) -> TableRequest:
        if party not in spec.parties:
            raise ConfigError(spec.source, f"{party!r} is not a party of this use case",
                              field="parties")
        return cls(party=party, dataset=spec.dataset, group_by=spec.group_by,
                   categories=spec.categories, measure=spec.measure, window=spec.window,
                   filters=spec.filters)

    @property
    def cells(self) -> int:
        n = 1
        for _, values in self.categories:
            n *= len(values)
        return n

    def error(self, message: str, column: str | None = None) -> DataError:
        return DataError(self.party, self.dataset, message, column=column)


@dataclass(frozen=True)
class LocalTable:
    """Row-major over the categories (itertools.product order of the category lists)."""

    values: np.ndarray  # int64, the measure per cell
    rows: np.ndarray  # int64, source rows per cell (the party contributes iff rows > 0)


def compute_local_table(dataset: DatasetConfig, request: TableRequest) -> LocalTable:
    """Count the party's dataset over the request's categories, inside its engine."""
    if dataset.format == "sql":
        groups = _sql_groups(dataset, request)
    else:
        groups = _duckdb_groups(dataset, request)
    return _to_table(groups, request)


# --- shared helpers -----------------------------------------------------------------


def _needed_columns(request: TableRequest) -> list[str]:
    needed = list(request.group_by)
    if request.measure.column is not None:
        needed.append(request.measure.column)
    if request.window is not None:
        needed.append(request.window.column)
    needed += [column for column, _ in request.filters]
    return needed


def _check_columns(request: TableRequest, available: Sequence[str]) -> None:
    present = set(available)
    for column in _needed_columns(request):
        if column not in present:
            raise request.error(f"column not found (available: {', '.join(available)})",
                                column=column)


def _engine_error(request: TableRequest, what: str, exc: BaseException) -> DataError:
    """The error the coordinator sees names the failure's kind only: a database's message
    can quote data (a value that failed to convert, a line of the file), so the full text
    goes to this party's own log."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's exception
    cause = orig if orig is not None else exc
    log.warning("party %s, dataset %s: %s: %s", request.party, request.dataset, what, cause)
    return request.error(f"{what} ({type(cause).__name__}; the engine's message is in "
                         f"{request.party}'s worker log)")


def _to_table(groups: Iterable[tuple[Any, ...]], request: TableRequest) -> LocalTable:
    """Place (key..., n_rows, value) rows into cells, refusing nulls and unknown values."""
    index = [{v: i for i, v in enumerate(values)} for _, values in request.categories]
    strides = []
    stride = 1
    for _, values in reversed(request.categories):
        strides.append(stride)
        stride *= len(values)
    strides.reverse()

    k = len(request.group_by)
    placed: list[tuple[int, int, Any]] = []
    nulls: set[int] = set()
    outside: dict[int, set[str]] = {}
    for row in groups:
        cell = 0
        ok = True
        for j in range(k):
            key = row[j]
            if key is None:
                nulls.add(j)
                ok = False
            elif (pos := index[j].get(key)) is None:
                outside.setdefault(j, set()).add(key)
                ok = False
            else:
                cell += pos * strides[j]
        if ok:
            placed.append((cell, int(row[k]), row[k + 1]))

    # Report the first offending column in group_by order; nulls before unknown values.
    for j, column in enumerate(request.group_by):
        if j in nulls:
            raise request.error("has missing (null) values", column=column)
        if j in outside:
            shown = sorted(outside[j])[:_MAX_LOGGED_VALUES]
            log.warning("%s: dataset %r, column %r: values outside the declared categories, "
                        "e.g. %s", request.party, request.dataset, column, shown)
            raise request.error("has values outside the declared categories", column=column)

    values = np.zeros(request.cells, dtype=np.int64)
    rows = np.zeros(request.cells, dtype=np.int64)
    for cell, n_rows, value in placed:
        rows[cell] += n_rows
        values[cell] += _as_int(value, request)
    return LocalTable(values=values, rows=rows)


def _as_int(value: Any, request: TableRequest) -> int:
    column = request.measure.column
    if value is None:  # SUM over only nulls
        return 0
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)  # PostgreSQL returns SUM(bigint) as numeric
    if not isinstance(value, int) or isinstance(value, bool):
        raise request.error("must be an integer column", column=column)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise request.error("the total does not fit in 64 bits", column=column)
    return value


# --- CSV / Parquet through DuckDB -----------------------------------------------------


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _duckdb_source(dataset: DatasetConfig, text_columns: Sequence[str] = ()) -> str:
    assert dataset.path is not None
    path = _sql_string(str(dataset.path))
    if dataset.format == "parquet":
        return f"read_parquet({path})"
    # header=true: the sniffer cannot tell a header from data when every column is text.
    # sample_size=-1: infer types from the whole file, not a sample that misses odd rows.
    # Category columns are read as text, so '01' stays '01' rather than becoming 1.
    options = "header=true, sample_size=-1"
    if text_columns:
        types = ", ".join(f"{_sql_string(c)}: 'VARCHAR'" for c in text_columns)
        options += f", types={{{types}}}"
    return f"read_csv_auto({path}, {options})"


def _duckdb_groups(dataset: DatasetConfig, request: TableRequest) -> list[tuple[Any, ...]]:
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
                raise _engine_error(request, "cannot read the file", exc) from exc

        if dataset.format == "omop":
            assert dataset.omop is not None
            raw = typed = register_treatments(con, Path(dataset.omop), run, request.error)
        else:
            raw, typed = _duckdb_source(dataset), _duckdb_source(dataset, request.group_by)
        described = run(f"DESCRIBE SELECT * FROM {raw}")
        _check_columns(request, [row[0] for row in described])
        if not run(f"SELECT 1 FROM {typed} LIMIT 1"):
            raise request.error("dataset has no rows")
        measure = request.measure
        if measure.kind == "sum":
            assert measure.column is not None
            col = _quote_ident(measure.column)
            type_name = str(run(f"DESCRIBE SELECT {col} FROM {typed}")[0][1])
            if type_name.upper() not in _DUCKDB_INTEGER_TYPES:
                raise request.error("must be an integer column", column=measure.column)
        return run(_group_query(request, typed, _quote_ident,
                                lambda e: f"CAST({e} AS VARCHAR)"))
    finally:
        con.close()


def _group_query(request: TableRequest, src: str, quote: Callable[[str], str],
                 as_text: Callable[[str], str]) -> str:
    keys = [as_text(quote(c)) for c in request.group_by]
    measure = request.measure
    if measure.kind == "count":
        value = "COUNT(*)"
    else:
        assert measure.column is not None
        col = quote(measure.column)
        value = f"COUNT(DISTINCT {col})" if measure.kind == "count_distinct" else f"SUM({col})"
    select = ", ".join([*keys, "COUNT(*) AS n_rows", f"{value} AS value"])
    sql = f"SELECT {select} FROM {src}"
    # The window and filters are pushed down too; ISO dates compare correctly as text or
    # as dates, and every literal is quoted.
    conditions = []
    if request.window is not None:
        col = quote(request.window.column)
        conditions.append(f"{col} >= {_sql_string(request.window.start)} AND "
                          f"{col} < {_sql_string(request.window.end)}")
    for column, values in request.filters:
        listed = ", ".join(_sql_string(v) for v in values)
        conditions.append(f"{as_text(quote(column))} IN ({listed})")
    if conditions:
        sql += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    return sql


# --- SQL databases through SQLAlchemy -------------------------------------------------


def _sql_groups(dataset: DatasetConfig, request: TableRequest) -> list[tuple[Any, ...]]:
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
        raise _engine_error(request, "cannot load the database driver", exc) from exc

    dialect = engine.dialect
    # SQLite would silently create an empty database file where the configured one is missing.
    if dialect.name == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:") and not Path(url.database).exists():
        raise request.error(f"file not found: {Path(url.database).name}")

    query = dataset.query.strip().rstrip(";").strip()
    src = f"({query}) AS src"
    preparer = dialect.identifier_preparer

    def as_text(expr: str) -> str:
        # Compiled per dialect: VARCHAR on SQLite/PostgreSQL, CHAR where VARCHAR needs a length.
        cast = sa.cast(sa.literal_column(expr), sa.String())
        return str(cast.compile(dialect=dialect))

    try:
        try:
            connection = engine.connect()
        except sa_exc.DBAPIError as exc:
            raise _engine_error(request, "cannot connect to the database", exc) from exc
        with connection:
            # The raw DB-API cursor: no parameter parsing of the party's query text, and
            # cursor.description carries the driver's type codes.
            cursor = connection.connection.cursor()
            try:
                def run(sql: str) -> list[tuple[Any, ...]]:
                    try:
                        cursor.execute(sql)
                        return [tuple(r) for r in cursor.fetchall()]
                    except dialect.loaded_dbapi.Error as exc:
                        raise _engine_error(request, "query failed", exc) from exc

                run(f"SELECT * FROM {src} LIMIT 0")
                description = list(cursor.description or ())
                _check_columns(request, [str(d[0]) for d in description])
                if not run(f"SELECT 1 FROM {src} LIMIT 1"):
                    raise request.error("dataset has no rows")
                if request.measure.kind == "sum":
                    _check_sql_integer(request, dialect.name, src, description, run, preparer)
                return run(_group_query(request, src, preparer.quote, as_text))
            finally:
                cursor.close()
    finally:
        engine.dispose()


def _check_sql_integer(request: TableRequest, dialect: str, src: str,
                       description: list[Any], run: Callable[[str], list[tuple[Any, ...]]],
                       preparer: Any) -> None:
    """Refuse a sum over a non-integer column before counting anything."""
    column = request.measure.column
    assert column is not None
    if dialect == "sqlite":
        # SQLite types values, not columns: look for any stored value that is not an integer.
        col = preparer.quote(column)
        bad = run(f"SELECT 1 FROM {src} WHERE typeof({col}) NOT IN ('integer', 'null') LIMIT 1")
        if bad:
            raise request.error("must be an integer column", column=column)
    elif dialect == "postgresql":
        type_code = next(d[1] for d in description if str(d[0]) == column)
        if type_code not in _POSTGRES_INTEGER_OIDS:
            raise request.error("must be an integer column", column=column)
    # Other databases: _as_int refuses any non-integer SUM result.
