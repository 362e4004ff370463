"""A party's person-level rows for record linkage: one row per person, read in its engine.

Each person comes back as their key (a pseudonym, as text) and the cell of the spec's
categories their attributes fall into. Where the dataset holds several rows per person, the
spec's reduce rule picks one inside the engine (a ROW_NUMBER window), so Python never sees
the other rows.

Errors follow connectors/engines.py: messages name the party, dataset
and column, never a data value or a count; offending category values go to the local log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mpc.config.party import DatasetConfig
from mpc.connectors.engines import Source, cell_indices, check_columns, open_source
from mpc.errors import DataError

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
    # Key and category columns are read as text, so '007' stays '007'.
    with open_source(dataset, request, text_columns=[request.key, *request.by]) as source:
        rows = _read(request, distinct_only, source)
    return _to_person_rows(rows, request)


# --- engine-independent queries -------------------------------------------------------


def _read(request: PersonRequest, distinct_only: bool, source: Source
          ) -> list[tuple[Any, ...]]:
    """Check the dataset against the request, then fetch (key, by...) per person.

    The same statements serve DuckDB and SQL databases: only quoting and the text cast
    differ, and ROW_NUMBER() OVER (...) runs on DuckDB, PostgreSQL and SQLite alike.
    """
    reduce = None if distinct_only else request.reduce
    needed = [request.key, *request.by] + ([reduce.order_by] if reduce else [])
    check_columns(request, source, needed)
    run, src, quote, as_text = source.run, source.relation, source.quote, source.as_text
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
        cell_indices(request, request.categories,
                     run(f"SELECT DISTINCT {', '.join(by)} FROM {src}"))

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
        cells = np.array(cell_indices(request, request.categories,
                                      (row[1:] for row in rows)), dtype=np.int64)
    else:
        cells = np.zeros(len(ids), dtype=np.int64)
    return PersonRows(ids=[str(key) for key in ids], cells=cells)
