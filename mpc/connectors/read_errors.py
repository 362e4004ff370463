"""Why a dataset cannot be read, in words fit for the coordinator and for the party's log.

An engine's own message can quote data (a value that failed to convert, a line of the
file). A database's goes to this party's log redacted (engine_message); a file's is
classified into the fixed words of ReadProblem. The coordinator gets them without line
numbers or field counts, which would tell it how many rows come before a bad one.
"""

from __future__ import annotations

import logging
import re
from enum import Enum
from typing import TYPE_CHECKING, Any

from mpc.config.party import DatasetConfig
from mpc.errors import DataError

if TYPE_CHECKING:
    from mpc.connectors.engines import DatasetRequest

log = logging.getLogger("mpc.connectors.engines")  # one logger for opening a dataset


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
    log.warning("party %s, dataset %s: cannot read the file: %s", request.party,
                request.dataset, engine_message(exc))
    return request.error(f"cannot read the file ({kind}; the engine's message, without its "
                         f"quoted text, is in {request.party}'s worker log)")
