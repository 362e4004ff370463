"""Opening a party's dataset in its engine: DuckDB for files and OMOP folders, the party's
own database through SQLAlchemy. The table connector (counts per cell) and the person
connector (one row per person) run their statements on what this module opens.

Error messages travel to the coordinator, which must learn nothing about the data: they
name the party, dataset and column, never a data value or a count of rows. An engine's own
message can quote data (a value that failed to convert, a line of the file), so its full
text goes to this party's log only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mpc.config.party import DatasetConfig
from mpc.config.spec import Window
from mpc.connectors.omop import register_omop
from mpc.errors import DataError

log = logging.getLogger(__name__)

Run = Callable[[str], list[tuple[Any, ...]]]

# At most this many offending values go to the party's own log.
MAX_LOGGED_VALUES = 10


class DatasetRequest(Protocol):
    """What a connector's request has in common: whose dataset, and its errors."""

    # Read-only: the requests are frozen dataclasses.
    @property
    def party(self) -> str: ...

    @property
    def dataset(self) -> str: ...  # dataset name (for error messages)

    def error(self, message: str, column: str | None = None) -> DataError: ...


@dataclass(frozen=True)
class Source:
    """An open dataset: run statements on `relation`, quote and cast with its dialect."""

    run: Run
    relation: str  # a FROM clause item; the `text_columns` read as text where the engine can
    columns: list[str]  # the dataset's columns, in order
    dialect: str  # "duckdb", or SQLAlchemy's dialect name
    quote: Callable[[str], str]  # quotes an identifier
    as_text: Callable[[str], str]  # casts an expression to text
    description: tuple[Any, ...] = ()  # DB-API cursor.description (SQL databases only)


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scope_conditions(source: Source, window: Window | None,
                     filters: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    """A spec's window and filters as SQL conditions on `source`. ISO dates compare
    correctly as text or as dates, and every literal is quoted."""
    conditions = []
    if window is not None:
        col = source.quote(window.column)
        conditions.append(f"{col} >= {sql_string(window.start)} AND "
                          f"{col} < {sql_string(window.end)}")
    conditions += [in_values(source, column, values) for column, values in filters]
    return conditions


def in_values(source: Source, column: str, values: Sequence[str]) -> str:
    """`column`, read as text, is one of `values` (quoted literals; false for a null)."""
    listed = ", ".join(sql_string(v) for v in values)
    return f"{source.as_text(source.quote(column))} IN ({listed})"


def where_clause(conditions: Sequence[str]) -> str:
    return " WHERE " + " AND ".join(f"({c})" for c in conditions) if conditions else ""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def engine_error(request: DatasetRequest, what: str, exc: BaseException) -> DataError:
    """The error the coordinator sees names the failure's kind only; the engine's message
    goes to this party's log."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's exception
    cause = orig if orig is not None else exc
    log.warning("party %s, dataset %s: %s: %s", request.party, request.dataset, what, cause)
    return request.error(f"{what} ({type(cause).__name__}; the engine's message is in "
                         f"{request.party}'s worker log)")


def check_columns(request: DatasetRequest, source: Source, needed: Sequence[str]) -> None:
    present = set(source.columns)
    for column in needed:
        if column not in present:
            raise request.error(f"column not found (available: {', '.join(source.columns)})",
                                column=column)


def check_list_bound(request: DatasetRequest, source: Source, key: str,
                     max_persons: int) -> None:
    """Fail when the dataset holds more persons than the party's own list bound. On the
    whole dataset, never a job's scope: every job on the dataset fails alike, whatever its
    spec asks, so the outcome answers no question the coordinator chose."""
    persons = source.run(f"SELECT COUNT(DISTINCT {source.quote(key)}) FROM {source.relation}"
                         )[0][0]
    if persons > max_persons:
        log.warning("%s: dataset %r holds %d persons, more than its list bound %d",
                    request.party, request.dataset, persons, max_persons)
        raise request.error(f"holds more persons than its list bound (max_persons in "
                            f"[datasets.{request.dataset}.bounds]); every job on it fails "
                            "until the bound is raised", key)


@contextmanager
def open_source(dataset: DatasetConfig, request: DatasetRequest,
                text_columns: Sequence[str] = ()) -> Iterator[Source]:
    """Open the party's dataset for the duration of the block.

    text_columns: read as text from CSV files, so a category '007' stays '007' rather than
    becoming 7; callers cast in SQL too, which covers typed sources.
    """
    if dataset.format == "sql":
        with _sql_source(dataset, request) as source:
            yield source
    else:
        with _duckdb_source(dataset, request, text_columns) as source:
            yield source


# --- CSV / Parquet / OMOP through DuckDB ----------------------------------------------


def duckdb_relation(dataset: DatasetConfig, text_columns: Sequence[str] = ()) -> str:
    assert dataset.path is not None
    path = sql_string(str(dataset.path))
    if dataset.format == "parquet":
        return f"read_parquet({path})"
    # header=true: the sniffer cannot tell a header from data when every column is text.
    # sample_size=-1: infer types from the whole file, not a sample that misses odd rows.
    options = "header=true, sample_size=-1"
    if text_columns:
        types = ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in text_columns)
        options += f", types={{{types}}}"
    return f"read_csv_auto({path}, {options})"


@contextmanager
def _duckdb_source(dataset: DatasetConfig, request: DatasetRequest,
                   text_columns: Sequence[str]) -> Iterator[Source]:
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
                raise engine_error(request, "cannot read the file", exc) from exc

        if dataset.format == "omop":
            assert dataset.omop is not None
            raw = typed = register_omop(con, Path(dataset.omop), run, request.error,
                                        dataset.view)
        else:
            # The column list comes from the file as it is, before any types are forced:
            # forcing a column the file lacks would fail with the engine's message instead
            # of ours.
            raw = duckdb_relation(dataset)
            typed = duckdb_relation(dataset, text_columns)
        columns = [str(row[0]) for row in run(f"DESCRIBE SELECT * FROM {raw}")]
        yield Source(run=run, relation=typed, columns=columns, dialect="duckdb",
                     quote=quote_ident, as_text=lambda e: f"CAST({e} AS VARCHAR)")
    finally:
        con.close()


# --- SQL databases through SQLAlchemy -------------------------------------------------


@contextmanager
def _sql_source(dataset: DatasetConfig, request: DatasetRequest) -> Iterator[Source]:
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
        raise engine_error(request, "cannot load the database driver", exc) from exc

    dialect = engine.dialect
    # SQLite would silently create an empty database file where the configured one is missing.
    if dialect.name == "sqlite" and url.database and url.database != ":memory:" \
            and not url.database.startswith("file:") and not Path(url.database).exists():
        raise request.error(f"file not found: {Path(url.database).name}")

    query = dataset.query.strip().rstrip(";").strip()
    relation = f"({query}) AS src"

    def as_text(expr: str) -> str:
        # Compiled per dialect: VARCHAR on SQLite/PostgreSQL, CHAR where VARCHAR needs a length.
        return str(sa.cast(sa.literal_column(expr), sa.String()).compile(dialect=dialect))

    try:
        try:
            connection = engine.connect()
        except sa_exc.DBAPIError as exc:
            raise engine_error(request, "cannot connect to the database", exc) from exc
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
                        raise engine_error(request, "query failed", exc) from exc

                run(f"SELECT * FROM {relation} LIMIT 0")
                description = tuple(cursor.description or ())
                yield Source(run=run, relation=relation,
                             columns=[str(d[0]) for d in description], dialect=dialect.name,
                             quote=dialect.identifier_preparer.quote, as_text=as_text,
                             description=description)
            finally:
                cursor.close()
    finally:
        engine.dispose()


# --- category cells -------------------------------------------------------------------


def cell_indices(request: DatasetRequest,
                 categories: Sequence[tuple[str, Sequence[str]]],
                 rows: Iterable[Sequence[Any]]) -> list[int]:
    """The row-major cell of each row's category values (one value per category, in
    order), refusing nulls and values outside the declared categories.

    The error names the first offending column in category order, nulls before unknown
    values; the unknown values themselves go to this party's log only.
    """
    index = [{v: i for i, v in enumerate(values)} for _, values in categories]
    strides = []
    stride = 1
    for _, values in reversed(categories):
        strides.append(stride)
        stride *= len(values)
    strides.reverse()

    cells: list[int] = []
    nulls: set[int] = set()
    outside: dict[int, set[str]] = {}
    for row in rows:
        cell = 0
        for j, value in enumerate(row):
            if value is None:
                nulls.add(j)
            elif (pos := index[j].get(value)) is None:
                outside.setdefault(j, set()).add(value)
            else:
                cell += pos * strides[j]
        cells.append(cell)

    for j, (column, _) in enumerate(categories):
        if j in nulls:
            raise request.error("has missing (null) values", column=column)
        if j in outside:
            shown = sorted(outside[j])[:MAX_LOGGED_VALUES]
            log.warning("%s: dataset %r, column %r: values outside the declared categories, "
                        "e.g. %s", request.party, request.dataset, column, shown)
            raise request.error("has values outside the declared categories", column=column)
    return cells
