"""A party's person-level rows for record linkage: one row per person, read in its engine.

Each person comes back as their key (a pseudonym, as text) and the cell of the spec's
categories their attributes fall into. Where the dataset holds several rows per person, the
spec's reduce rule picks one inside the engine (a ROW_NUMBER window), so Python never sees
the other rows; without a rule, the first row in the order of the `by` values.

Nothing inside the job's scope makes the job fail: rows with a null key, or with `by`
values outside the categories, are left out (this party's log says how many), a null
ordering value sorts last, and an empty scope is an empty list. The one data check, that
the dataset holds no more persons than the party's list bound, runs on the whole dataset,
so it fails every job on the dataset alike, whatever the spec asks. Errors follow
connectors/engines.py: they name the party, dataset and column, never a value or a count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from mpc.config.party import DatasetConfig
from mpc.config.spec import Reduce, Window
from mpc.connectors.engines import (
    Source,
    cell_indices,
    check_columns,
    check_list_bound,
    in_values,
    open_source,
    scope_conditions,
    where_clause,
)
from mpc.errors import DataError

log = logging.getLogger(__name__)
__all__ = ["PersonRequest", "PersonRows", "Reduce", "compute_person_rows"]


@dataclass(frozen=True)
class PersonRequest:
    """What one party must read: a key per person and the cell of their `by` values."""

    party: str
    dataset: str  # dataset name (for error messages)
    key: str  # the column identifying a person (a pseudonym)
    by: tuple[str, ...]  # attribute columns (may be empty)
    categories: tuple[tuple[str, tuple[str, ...]], ...]  # in `by` order, values as text
    reduce: Reduce | None = None
    window: Window | None = None  # only rows in this period
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()  # only rows with these values
    max_persons: int | None = None  # the party's list bound, checked on the whole dataset

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
    needed += [request.window.column] if request.window else []
    needed += [column for column, _ in request.filters]
    check_columns(request, source, list(dict.fromkeys(needed)))
    run, src, quote, as_text = source.run, source.relation, source.quote, source.as_text
    key = as_text(quote(request.key))
    if request.max_persons is not None:
        check_list_bound(request, source, request.key, request.max_persons)

    by = [as_text(quote(column)) for column in request.by]
    fits = [f"{quote(request.key)} IS NOT NULL"]
    fits += [in_values(source, column, values) for column, values in request.categories]
    scope = scope_conditions(source, request.window, request.filters)
    _log_left_out(request, source, scope, fits)
    where = where_clause(scope + fits)

    if distinct_only or not by and reduce is None:
        return run(f"SELECT DISTINCT {key} FROM {src}{where}")
    # keep="last" is keep="first" over the reversed order, tie-breakers included, so it
    # takes the last row of the very order that "first" takes the first of. A null
    # ordering value sorts last either way: it is never preferred to a known one.
    direction = "ASC" if reduce is None or reduce.keep == "first" else "DESC"
    order = [f"{e} {direction}" for e in by]
    if reduce is not None:
        col = quote(reduce.order_by)
        order = [f"CASE WHEN {col} IS NULL THEN 1 ELSE 0 END", f"{col} {direction}", *order]
    outer = ", ".join(["person_key", *(f"by_{j}" for j in range(len(by)))])
    inner = ", ".join([f"{key} AS person_key", *(f"{e} AS by_{j}" for j, e in enumerate(by)),
                       f"ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {', '.join(order)}) "
                       "AS person_row"])
    return run(f"SELECT {outer} FROM (SELECT {inner} FROM {src}{where}) AS ranked "
               "WHERE person_row = 1")


def _log_left_out(request: PersonRequest, source: Source, scope: list[str],
                  fits: list[str]) -> None:
    """This party's operator (never the coordinator) learns how many rows in scope no
    person's entry uses: a null key, or `by` values outside the categories."""
    all_fit = " AND ".join(f"({c})" for c in fits)
    total, fitting = source.run(
        f"SELECT COUNT(*), COUNT(CASE WHEN {all_fit} THEN 1 END) FROM {source.relation}"
        f"{where_clause(scope)}")[0]
    if total != fitting:
        log.warning("%s: dataset %r: %d rows in this job's scope are left out (a null key "
                    "or values outside the declared categories)", request.party,
                    request.dataset, total - fitting)


def _to_person_rows(rows: list[tuple[Any, ...]], request: PersonRequest) -> PersonRows:
    # Sorted in Python, not in SQL: text ordering would follow each database's collation.
    rows = sorted(rows, key=lambda row: row[0])
    ids = [row[0] for row in rows]
    # The query returns one row per non-null key; a live database that changes under it
    # cannot break that, so anything else is an engine fault, not a data question.
    if any(key is None for key in ids) or len(set(ids)) != len(ids):
        raise request.error("the engine returned more than one row per person",
                            column=request.key)
    if request.by:
        cells = np.array(cell_indices(request, request.categories,
                                      (row[1:] for row in rows)), dtype=np.int64)
    else:
        cells = np.zeros(len(ids), dtype=np.int64)
    return PersonRows(ids=[str(key) for key in ids], cells=cells)
