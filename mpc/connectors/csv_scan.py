"""A CSV file checked line by line before DuckDB reads it: its encoding, its quoting and
that every line has as many fields as the header (one more, empty, is a trailing
delimiter, as Excel writes). DuckDB is then told the file's layout instead of guessing
it, and reads a file in another encoding than UTF-8 from a private UTF-8 copy.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mpc.config.party import DatasetConfig
from mpc.connectors.read_errors import ReadProblem, Unreadable

# A longer line is not a line of a table (a file without line breaks, say): refusing it
# bounds the memory the check of a file takes.
MAX_LINE_BYTES = 1 << 20
_DELIMITERS = (",", ";", "\t", "|")  # tried in this order when the config names none


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
