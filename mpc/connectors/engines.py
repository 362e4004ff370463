"""Opening a party's dataset in its engine: DuckDB for files and OMOP folders, the party's
own database through SQLAlchemy. The table connector (counts per cell) and the person
connector (one row per person) run their statements on what this module opens.

Error messages travel to the coordinator, which must learn nothing about the data: they
name the party, dataset and column, never a data value or a count of rows (read_errors.py
words them). A CSV file is checked line by line first (csv_scan.py), and DuckDB is told its
layout instead of guessing it.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mpc.config.party import DatasetConfig
from mpc.config.spec import Window
from mpc.connectors.csv_scan import CsvLayout, scan_csv
from mpc.connectors.omop import register_omop
from mpc.connectors.read_errors import (
    ReadProblem,
    Unreadable,
    engine_error,
    file_error,
    unreadable,
)
from mpc.errors import DataError

log = logging.getLogger(__name__)

Run = Callable[[str], list[tuple[Any, ...]]]

# At most this many offending values go to the party's own log.
MAX_LOGGED_VALUES = 10
_WHOLE_LIMIT = 2**53  # doubles up to here hold every whole number exactly


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


def _trailing_name(names: Sequence[str]) -> str:
    name = "trailing delimiter"
    while name in names:
        name += "_"
    return name


def duckdb_relation(dataset: DatasetConfig, text_columns: Sequence[str] = (),
                    layout: CsvLayout | None = None, whole: Sequence[str] = ()) -> str:
    """The FROM item that reads a Parquet file, or a CSV file with its scanned `layout`:
    `text_columns` as text, `whole` (columns of whole numbers typed as doubles) as BIGINT."""
    assert dataset.path is not None
    if dataset.format == "parquet":
        return f"read_parquet({sql_string(str(dataset.path))})"
    assert layout is not None
    names = list(layout.names)
    if layout.empty:
        # DuckDB cannot read a file without records once told its layout.
        columns = ", ".join(f"CAST(NULL AS VARCHAR) AS {quote_ident(n)}" for n in names)
        return f"(SELECT {columns} LIMIT 0) AS csv"
    read_names = names + ([_trailing_name(names)] if layout.trailing != "none" else [])
    options = [
        # The file's own layout (scan_csv), never a guess: a guess can take a line of data
        # for the header.
        "header=false", f"skip={layout.skip}",
        "names=[" + ", ".join(sql_string(n) for n in read_names) + "]",
        f"delim={sql_string(layout.delimiter)}", "quote='\"'", "escape='\"'",
        # scan_csv checked every record already; strict mode would refuse mixed line
        # endings, which that check accepts.
        "strict_mode=false",
        # Infer types from the whole file, not a sample that misses odd rows.
        "sample_size=-1",
    ]
    if dataset.decimal != ".":
        options.append(f"decimal_separator={sql_string(dataset.decimal)}")
    text = [c for c in text_columns if c in names]
    if text:
        types = ", ".join(f"{sql_string(c)}: 'VARCHAR'" for c in text)
        options.append(f"types={{{types}}}")
    read = f"read_csv({sql_string(str(layout.file))}, {', '.join(options)})"
    if layout.trailing == "none" and not whole:
        return read
    # trunc(): DuckDB pushes a plain cast into the reader, which then parses '12,0' as an
    # integer, ignoring decimal_separator.
    columns = ", ".join(f"CAST(trunc({quote_ident(n)}) AS BIGINT) AS {quote_ident(n)}"
                        if n in whole else quote_ident(n) for n in names)
    return f"(SELECT {columns} FROM {read}) AS csv"


def _whole_columns(run: Run, relation: str) -> list[str]:
    """The columns DuckDB typed as doubles whose values are all whole numbers ('12,0' with
    decimal = ","): a sum or a bin needs them as the integers they are."""
    doubles = [str(row[0]) for row in run(f"DESCRIBE SELECT * FROM {relation}")
               if str(row[1]).upper() in ("DOUBLE", "FLOAT")]
    if not doubles:
        return []
    checks = ", ".join(
        f"bool_and({c} IS NULL OR (isfinite({c}) AND {c} = trunc({c}) "
        f"AND abs({c}) < {_WHOLE_LIMIT}))" for c in map(quote_ident, doubles))
    flags = run(f"SELECT {checks} FROM {relation}")[0]
    return [c for c, whole in zip(doubles, flags, strict=True) if whole]


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

    with ExitStack() as stack:
        layout = None
        if dataset.format == "csv":

            def private_copy() -> Path:
                # Private to this process (mkdtemp makes it 0700) and gone after the job.
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="mpc-csv-"))
                return Path(folder) / "records.csv"

            try:
                layout = scan_csv(dataset, private_copy() if dataset.encoding != "utf-8"
                                  else None)
                if layout.trailing == "some":  # a second pass, for a file DuckDB misreads
                    layout = scan_csv(dataset, private_copy())
            except Unreadable as exc:
                raise unreadable(request, dataset, exc.problem, "found by the line check",
                                 **exc.params) from None
            except OSError as exc:
                raise unreadable(request, dataset, ReadProblem.SYSTEM, type(exc).__name__,
                                 error=type(exc).__name__) from None

        con = duckdb.connect(":memory:")
        stack.callback(con.close)

        def run(sql: str) -> list[tuple[Any, ...]]:
            try:
                return con.execute(sql).fetchall()
            except duckdb.Error as exc:
                # Not chained: DuckDB's message can quote a line of the file.
                raise file_error(request, dataset, exc) from None

        if dataset.format == "omop":
            assert dataset.omop is not None
            relation = register_omop(con, Path(dataset.omop), run, request.error,
                                     dataset.view)
            columns = [str(row[0]) for row in run(f"DESCRIBE SELECT * FROM {relation}")]
        elif layout is None:
            relation = duckdb_relation(dataset)
            columns = [str(row[0]) for row in run(f"DESCRIBE SELECT * FROM {relation}")]
        else:
            relation = duckdb_relation(dataset, text_columns, layout)
            whole = _whole_columns(run, relation)
            if whole:
                relation = duckdb_relation(dataset, text_columns, layout, whole)
            columns = list(layout.names)
        yield Source(run=run, relation=relation, columns=columns, dialect="duckdb",
                     quote=quote_ident, as_text=lambda e: f"CAST({e} AS VARCHAR)")


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
            raise engine_error(request, "cannot connect to the database", exc,
                               dataset.url or "") from exc
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
                        raise engine_error(request, "query failed", exc,
                                           dataset.query or "") from exc

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
