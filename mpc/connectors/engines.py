"""Opening a party's dataset in its engine: DuckDB for files and OMOP folders, the party's
own database through SQLAlchemy. The table connector (counts per cell) and the person
connector (one row per person) run their statements on what this module opens.

Error messages travel to the coordinator, which must learn nothing about the data: they
name the party, dataset and column, never a data value or a count of rows. An engine's own
message can quote data (a value that failed to convert, a line of the file): a database's
goes to this party's log only, and a file's is not even logged, but classified into the
fixed words of ReadProblem (with the line number where one is known).

A CSV file is checked line by line before DuckDB reads it (scan_csv): its encoding, its
quoting and that every line has as many fields as the header (one more, empty, is a
trailing delimiter, as Excel writes). DuckDB is then told the file's layout instead of
guessing it, and reads a file in another encoding than UTF-8 from a private UTF-8 copy.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Any, Protocol

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


def engine_error(request: DatasetRequest, what: str, exc: BaseException,
                 query: str = "") -> DataError:
    """The error the coordinator sees names the failure's kind only; the engine's message
    goes to this party's log, redacted (engine_message): a database quotes the value it
    could not convert, and no data value is ever logged."""
    orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's exception
    cause = orig if orig is not None else exc
    log.warning("party %s, dataset %s: %s: %s", request.party, request.dataset, what,
                engine_message(cause, query))
    return request.error(f"{what} ({type(cause).__name__}; the engine's message is in "
                         f"{request.party}'s worker log)")


_QUOTED = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'|\([^()\n]*\)=\([^()\n]*\)")


def engine_message(exc: BaseException, query: str = "") -> str:
    """An engine's message fit for a log: its first line only (PostgreSQL's DETAIL lines
    quote whole rows), every quoted text blanked unless the party's own query holds it (a
    table or column name), and `(key)=(value)` pairs blanked."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""

    def blank(match: re.Match[str]) -> str:
        text = match.group(0)
        inner = text[1:-1]
        if text[0] in "\"'" and inner and inner in query:
            return text
        return f"{text[0]}…{text[-1]}" if text[0] in "\"'" else "(…)=(…)"

    return f"{type(exc).__name__}: {_QUOTED.sub(blank, first)}"


class ReadProblem(Enum):
    """Why a file cannot be read, in the words both the coordinator and this party's log
    get. The placeholders take line numbers, field counts, column and type names and
    config names only: never a value or a line of the file."""

    ENCODING = "it is not valid {encoding}{at}; set encoding{where}"
    TABLE_ENCODING = "it is not valid UTF-8{at}; save the table as UTF-8"
    BOM = ("it starts with a UTF-8 byte order mark, so it is UTF-8 text, not {encoding}; set "
           "encoding = \"utf-8\"{where}")
    FIELDS = ("line {line} has {found} fields where {header} has {expected} (check "
              "delimiter{where})")
    QUOTES = ("line {line} has a quote character out of place, or a quoted field that is "
              "never closed")
    LINE_ENDINGS = ("line {line} has a carriage return without a line feed (save the file "
                    "with Windows or Unix line endings)")
    TOO_LONG = "line {line} is longer than this reader allows ({limit}): is it a CSV file?"
    NO_HEADER = "it has no header line (a file without one needs header = false and columns{where})"
    CONVERSION = "line {line}: a value in column '{column}' cannot be read as {type}"
    ANY_CONVERSION = "a value cannot be read as the type of its column{at}"
    LAYOUT = ("the engine cannot tell its layout (check encoding and delimiter{where}, and "
              "that every line has as many fields as the header)")
    MISSING = "a file it needs is missing or cannot be opened"
    SYSTEM = "opening or reading it, or writing its UTF-8 copy, failed ({error})"

    def reason(self, **params: Any) -> str:
        return self.value.format(**params)

    def public(self, **params: Any) -> str:
        """The words the coordinator gets: no line number nor field count, which would tell
        it how many rows come before a bad one (the party's log has them)."""
        return _PUBLIC.get(self, self.value).format(**{**params, "at": ""})


_PUBLIC = {
    ReadProblem.FIELDS: "a line has another number of fields than {header} (check "
                        "delimiter{where})",
    ReadProblem.QUOTES: "a line has a quote character out of place, or a quoted field that "
                        "is never closed",
    ReadProblem.LINE_ENDINGS: "a line has a carriage return without a line feed (save the "
                              "file with Windows or Unix line endings)",
    ReadProblem.TOO_LONG: "a line is longer than this reader allows ({limit}): is it a CSV "
                          "file?",
    ReadProblem.CONVERSION: "a value in column '{column}' cannot be read as {type}",
}


class Unreadable(Exception):
    """A file that cannot be read, and why (see ReadProblem)."""

    def __init__(self, problem: ReadProblem, **params: Any) -> None:
        self.problem = problem
        self.params = params
        super().__init__(problem.name)


_ENCODING_NAMES = {"utf-8": "UTF-8", "windows-1252": "Windows-1252", "latin-1": "Latin-1",
                   "utf-16": "UTF-16"}


def unreadable(request: DatasetRequest, dataset: DatasetConfig, problem: ReadProblem,
               kind: str, **params: Any) -> DataError:
    """The error for a file that cannot be read, logged in the same fixed words."""
    params.setdefault("at", "")
    params.setdefault("encoding", _ENCODING_NAMES.get(dataset.encoding, dataset.encoding))
    params.setdefault("where", f" in [datasets.{dataset.name}] of party.toml"
                               if dataset.format == "csv" else "")
    params.setdefault("header", "the header" if dataset.header else "columns")
    log.warning("party %s, dataset %s: cannot read the file: %s (%s)", request.party,
                request.dataset, problem.reason(**params), kind)
    where = (" (which line is in this party's worker log)" if problem in _PUBLIC or params["at"]
             else "")
    return request.error(f"cannot read the file: {problem.public(**params)}{where}")


_LINE = re.compile(r"CSV Error on Line: (\d+)")
_COLUMNS = re.compile(r"Expected Number of Columns: (\d+) Found: (\d+)")
_CONVERTING = re.compile(r'converting column "([^"\n]*)"')
_TO_TYPE = re.compile(r"to '([A-Z][A-Z0-9_ ]*)'")


def _classify(message: str, exc: BaseException, dataset: DatasetConfig
              ) -> tuple[ReadProblem, dict[str, Any]] | None:
    """DuckDB's message, read for its kind, line number and column name only."""
    import duckdb

    line = _LINE.search(message)
    at = {"line": int(line.group(1)), "at": f" (line {line.group(1)})"} if line else {}
    if "Invalid unicode" in message or re.search(r"not (utf-8|latin-1) encoded", message):
        return (ReadProblem.ENCODING if dataset.format == "csv" else
                ReadProblem.TABLE_ENCODING), {"at": at.get("at", "")}
    if (found := _COLUMNS.search(message)) and line:
        return ReadProblem.FIELDS, {**at, "expected": int(found.group(1)),
                                    "found": int(found.group(2))}
    if "unterminated quote" in message and line:
        return ReadProblem.QUOTES, at
    if "Maximum line size" in message and line:
        return ReadProblem.TOO_LONG, {**at, "limit": "the engine's line size"}
    if isinstance(exc, duckdb.ConversionException):
        column, type_name = _CONVERTING.search(message), _TO_TYPE.search(message)
        if column and type_name and line:
            return ReadProblem.CONVERSION, {**at, "column": column.group(1),
                                            "type": type_name.group(1)}
        return ReadProblem.ANY_CONVERSION, {"at": at.get("at", "")}
    if "Error when sniffing file" in message or "state machine reached an invalid state" \
            in message:
        return ReadProblem.LAYOUT, {}
    if isinstance(exc, duckdb.IOException) and re.search(
            r"No files found|Cannot open file|No such file", message):
        return ReadProblem.MISSING, {}
    return None


def _without_data(message: str) -> str:
    """The first line of an engine's message with anything quoted left out: the rest can
    quote a line of the file, and quotes can hold a value."""
    first = message.strip().splitlines()[0] if message.strip() else ""
    return re.sub(r'"[^"]*"|\'[^\']*\'', "...", first)


def file_error(request: DatasetRequest, dataset: DatasetConfig, exc: BaseException
               ) -> DataError:
    """DuckDB's error on a file dataset, in the fixed words of ReadProblem where it is one
    of them; else its kind only, and its first line without quoted text in the log."""
    message = str(exc)
    kind = type(exc).__name__
    classified = _classify(message, exc, dataset)
    if classified is not None:
        problem, params = classified
        return unreadable(request, dataset, problem, kind, **params)
    log.warning("party %s, dataset %s: cannot read the file: %s (%s)", request.party,
                request.dataset, _without_data(message), kind)
    return request.error(f"cannot read the file ({kind}; the engine's message, without its "
                         f"quoted text, is in {request.party}'s worker log)")


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


# A longer line is not a line of a table (a file without line breaks, say): refusing it
# bounds the memory the check of a file takes.
MAX_LINE_BYTES = 1 << 20
_DELIMITERS = (",", ";", "\t", "|")  # tried in this order when the config names none
_WHOLE_LIMIT = 2**53  # doubles up to here hold every whole number exactly


@dataclass(frozen=True)
class CsvLayout:
    """A CSV file as scan_csv found it, for DuckDB to read without guessing."""

    file: Path  # the file itself, or its UTF-8 copy
    names: tuple[str, ...]  # the columns, in order
    skip: int  # lines before the first record (the header's)
    delimiter: str
    trailing: str  # records ending in one empty extra field: "none" or "all" (or "some")
    empty: bool  # no records at all


class _Lines:
    """A file's lines, decoded; `read` counts them.

    UTF-8, Windows-1252 and Latin-1 are read line by line as bytes (a byte 0x0A is a line
    feed in each), so a decoding error has its exact line; UTF-16 is decoded ahead of the
    line being read, so its errors come without one.
    """

    def __init__(self, raw: IO[bytes], encoding: str) -> None:
        self.raw = raw
        self.encoding = encoding
        self.read = 0

    def __iter__(self) -> Iterator[str]:
        if self.encoding == "utf-16":
            yield from self._utf16()
            return
        if self.encoding != "utf-8" and self.raw.read(3) == b"\xef\xbb\xbf":
            raise Unreadable(ReadProblem.BOM)
        self.raw.seek(0)
        while chunk := self.raw.readline(MAX_LINE_BYTES + 1):
            self.read += 1
            if len(chunk) > MAX_LINE_BYTES:
                raise Unreadable(ReadProblem.TOO_LONG, line=self.read, limit="1 MiB")
            try:
                line = chunk.decode(self.encoding)
            except UnicodeDecodeError:
                raise Unreadable(ReadProblem.ENCODING, at=f" (line {self.read})") from None
            if self.read == 1:
                line = line.removeprefix("\ufeff")  # a UTF-8 byte order mark
            yield line

    def _utf16(self) -> Iterator[str]:
        text = io.TextIOWrapper(self.raw, encoding="utf-16", newline="")
        limit = MAX_LINE_BYTES // 2
        while True:
            try:
                line = text.readline(limit + 1)
            except UnicodeDecodeError:
                raise Unreadable(ReadProblem.ENCODING) from None
            if not line:
                return
            self.read += 1
            if len(line) > limit:
                raise Unreadable(ReadProblem.TOO_LONG, line=self.read, limit="1 MiB")
            yield line


def _detect_delimiter(line: str) -> str:
    """The candidate that splits the first line into most fields (',' on a tie)."""
    best, most = ",", 1
    for candidate in _DELIMITERS:
        try:
            fields = len(next(csv.reader([line], delimiter=candidate), []))
        except csv.Error:
            continue
        if fields > most:
            best, most = candidate, fields
    return best


def _header_names(fields: Sequence[str]) -> tuple[str, ...]:
    """Column names as DuckDB gives them: trimmed, `column<i>` for an empty one, `_1`
    appended to a repeat. An empty last one is a trailing delimiter, not a column."""
    fields = [f.strip() for f in fields]
    if len(fields) > 1 and not fields[-1]:
        fields.pop()
    names: list[str] = []
    for i, name in enumerate(fields):
        name = name or f"column{i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return tuple(names)


def scan_csv(dataset: DatasetConfig, copy: Path | None = None) -> CsvLayout:
    """Check a CSV file line by line: its encoding, its quoting, and that each record has
    as many fields as there are columns, or one more that is empty (a trailing delimiter).
    With `copy`, also write its records there as UTF-8, without header or trailing field
    (DuckDB reads no other encoding reliably, and guesses wrong on a file where only some
    lines end in a delimiter). Memory stays bounded by MAX_LINE_BYTES. Raises Unreadable."""
    assert dataset.path is not None
    with ExitStack() as stack:
        raw = stack.enter_context(open(dataset.path, "rb"))
        out = (stack.enter_context(open(copy, "w", encoding="utf-8", newline=""))
               if copy is not None else None)
        lines = iter(_Lines(raw, dataset.encoding))
        first = next(lines, None)
        delimiter = dataset.delimiter or _detect_delimiter(first or "")
        consumed = 0

        def fed() -> Iterator[str]:
            nonlocal consumed
            for line in itertools.chain([first] if first is not None else [], lines):
                consumed += 1
                yield line

        reader = csv.reader(fed(), delimiter=delimiter, quotechar='"', doublequote=True,
                            strict=True)

        def record() -> tuple[int, list[str] | None]:
            """The next non-blank record and its first line; None at the end."""
            while True:
                start = consumed + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    return start, None
                except csv.Error as exc:
                    if "field larger" in str(exc):
                        raise Unreadable(ReadProblem.TOO_LONG, line=consumed,
                                         limit=f"{csv.field_size_limit() // 1024} KiB per "
                                               "field") from None
                    if "new-line character" in str(exc):
                        raise Unreadable(ReadProblem.LINE_ENDINGS, line=consumed) from None
                    raise Unreadable(ReadProblem.QUOTES, line=start) from None
                if fields:
                    return start, fields

        skip = 0
        if dataset.header:
            _, header = record()
            names = _header_names(header) if header is not None else ()
            if not names:
                raise Unreadable(ReadProblem.NO_HEADER)
            skip = consumed
        else:
            assert dataset.columns is not None
            names = dataset.columns
        width, plain, extra = len(names), 0, 0
        writer = (csv.writer(out, delimiter=delimiter, quotechar='"', lineterminator="\n")
                  if out is not None else None)
        while True:
            start, fields = record()
            if fields is None:
                break
            if len(fields) == width:
                plain += 1
            elif len(fields) == width + 1 and fields[-1] == "":
                extra += 1
            else:
                raise Unreadable(ReadProblem.FIELDS, line=start, found=len(fields),
                                 expected=width)
            if writer is not None:
                writer.writerow(fields[:width])
    if copy is not None:
        return CsvLayout(file=copy, names=names, skip=0, delimiter=delimiter, trailing="none",
                         empty=not plain + extra)
    trailing = "none" if not extra else "all" if not plain else "some"
    return CsvLayout(file=dataset.path, names=names, skip=skip, delimiter=delimiter,
                     trailing=trailing, empty=not plain + extra)


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
