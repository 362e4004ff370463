"""A party's local table: one count (or sum) per category cell, computed in its own engine.

Every query here aggregates inside the engine (DuckDB for files, the party's database
through SQLAlchemy), so only one row per group ever reaches Python.

Nothing inside the scope the coordinator chose (window, filters, categories) can make the
job fail: rows outside the categories or with nulls in a group column are left out of
every cell, rows beyond the party's contribution bound are left out, summed values are
clipped to the party's range, and an empty scope is a table of zeros. What was left out
goes to this party's own log. Errors (a missing file or column, a column that is not an
integer) concern the dataset itself, name the party, dataset and column, and never a data
value or a count of rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from mpc.config.bounds import Clip, DatasetBounds
from mpc.config.party import DatasetConfig
from mpc.config.spec import Measure, UseCaseSpec, Window
from mpc.connectors.engines import (
    MAX_LOGGED_VALUES,
    Source,
    cell_indices,
    check_columns,
    check_list_bound,
    in_values,
    open_source,
    scope_conditions,
    where_clause,
)
from mpc.errors import ConfigError, DataError

log = logging.getLogger(__name__)

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
    person_key: str | None = None  # with max_rows_per_person: who a row belongs to
    max_rows_per_person: int | None = None  # the party's contribution bound
    max_persons: int | None = None  # the party's list bound, checked on the whole dataset
    clip: Clip | None = None  # the party's range for each summed value
    # Columns a row must have a value in to count at all (a distribution's measure and
    # censoring flag); read alongside the group columns.
    value_columns: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: UseCaseSpec, party: str,
                  bounds: DatasetBounds | None = None) -> TableRequest:
        if party not in spec.parties:
            raise ConfigError(spec.source, f"{party!r} is not a party of this use case",
                              field="parties")
        bounds = bounds or DatasetBounds()
        window, filters = spec.scope_of(party)
        return cls(party=party, dataset=spec.dataset_of(party), group_by=spec.group_by,
                   categories=spec.categories, measure=spec.measure, window=window,
                   filters=filters, person_key=bounds.person_key,
                   max_rows_per_person=bounds.max_rows_per_person,
                   max_persons=bounds.max_persons,
                   clip=bounds.clip_of(spec.measure.column or ""))

    @property
    def bounded(self) -> bool:
        """Whether each person's rows are limited to max_rows_per_person."""
        return self.person_key is not None and self.max_rows_per_person is not None

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
    return _to_table(_groups(dataset, request), request)


# --- shared helpers -----------------------------------------------------------------


def needed_columns(request: TableRequest) -> list[str]:
    needed = list(request.group_by)
    if request.measure.column is not None:
        needed.append(request.measure.column)
    needed += request.value_columns
    if request.window is not None:
        needed.append(request.window.column)
    needed += [column for column, _ in request.filters]
    if request.person_key is not None and (request.bounded or request.max_persons):
        needed.append(request.person_key)
    return list(dict.fromkeys(needed))


def _to_table(groups: list[tuple[Any, ...]], request: TableRequest) -> LocalTable:
    """Place (key..., n_rows, value) rows into cells (the query only returns rows that
    fit the categories; cell_indices checks it again)."""
    k = len(request.group_by)
    cells = cell_indices(request, request.categories, (row[:k] for row in groups))
    values = np.zeros(request.cells, dtype=np.int64)
    rows = np.zeros(request.cells, dtype=np.int64)
    for cell, row in zip(cells, groups, strict=True):
        rows[cell] += int(row[k])
        values[cell] += _as_int(row[k + 1], request)
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


# --- the count, in the party's engine -----------------------------------------------


def _groups(dataset: DatasetConfig, request: TableRequest) -> list[tuple[Any, ...]]:
    with open_source(dataset, request, text_columns=request.group_by) as source:
        check_columns(request, source, needed_columns(request))
        if request.person_key is not None and request.max_persons is not None:
            check_list_bound(request, source, request.person_key, request.max_persons)
        if not source.run(f"SELECT 1 FROM {source.relation} LIMIT 1"):
            return []  # an empty dataset (a CSV file may then type every column as text)
        if request.measure.kind == "sum":
            _check_integer(request, source)
        log_left_out(request, source)
        return source.run(_group_query(request, source))


def _scope(request: TableRequest, source: Source) -> list[str]:
    return scope_conditions(source, request.window, request.filters)


def _fits(request: TableRequest, source: Source) -> list[str]:
    """Conditions a row must meet to be counted at all: a listed category in every group
    column (which leaves out nulls), a person key where contributions are bounded, a value
    in every value column, and an integer where SQLite stores values of any type in a
    summed column."""
    conditions = [in_values(source, column, values) for column, values in request.categories]
    if request.bounded:
        assert request.person_key is not None
        conditions.append(f"{source.quote(request.person_key)} IS NOT NULL")
    conditions += [f"{source.quote(c)} IS NOT NULL" for c in request.value_columns]
    if request.measure.kind == "sum" and source.dialect == "sqlite":
        assert request.measure.column is not None
        conditions.append(f"typeof({source.quote(request.measure.column)}) "
                          "IN ('integer', 'null')")
    return conditions


def counted_rows(request: TableRequest, source: Source) -> str:
    """The rows that count: in scope, fitting, and at most max_rows_per_person of each
    person (the first ones in the order of their group values, so a repeat of the same
    query keeps the same rows)."""
    quote = source.quote
    columns = ", ".join(quote(c) for c in needed_columns(request))
    where = where_clause(_scope(request, source) + _fits(request, source))
    if not request.bounded:
        return f"(SELECT {columns} FROM {source.relation}{where}) AS counted"
    assert request.person_key is not None
    order = ", ".join(quote(c) for c in [*request.group_by, *([request.measure.column]
                                                              if request.measure.column
                                                              else []),
                                         *request.value_columns])
    ranked = (f"SELECT {columns}, ROW_NUMBER() OVER (PARTITION BY "
              f"{quote(request.person_key)} ORDER BY {order}) AS person_row "
              f"FROM {source.relation}{where}")
    return (f"(SELECT {columns} FROM ({ranked}) AS ranked "
            f"WHERE person_row <= {int(request.max_rows_per_person or 0)}) AS counted")


def _group_query(request: TableRequest, source: Source) -> str:
    quote, as_text = source.quote, source.as_text
    keys = [as_text(quote(c)) for c in request.group_by]
    measure = request.measure
    if measure.kind == "count":
        value = "COUNT(*)"
    else:
        assert measure.column is not None
        col = quote(measure.column)
        if measure.kind == "count_distinct":
            value = f"COUNT(DISTINCT {col})"
        elif request.clip is not None:
            low, high = request.clip.low, request.clip.high
            value = (f"SUM(CASE WHEN {col} < {low} THEN {low} WHEN {col} > {high} "
                     f"THEN {high} ELSE {col} END)")
        else:
            value = f"SUM({col})"
    select = ", ".join([*keys, "COUNT(*) AS n_rows", f"{value} AS value"])
    sql = f"SELECT {select} FROM {counted_rows(request, source)}"
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    return sql


def log_left_out(request: TableRequest, source: Source) -> None:
    """Tell this party's operator (never the coordinator) which rows in scope no cell
    counts. The same statements run whatever the data holds."""
    scope = _scope(request, source)
    fits = " AND ".join(f"({c})" for c in _fits(request, source)) or "1 = 1"
    total, fitting = source.run(
        f"SELECT COUNT(*), COUNT(CASE WHEN {fits} THEN 1 END) FROM {source.relation}"
        f"{where_clause(scope)}")[0]
    counted = source.run(f"SELECT COUNT(*) FROM {counted_rows(request, source)}")[0][0]
    if total != counted:
        log.warning("%s: dataset %r: %d rows in this job's scope are left out of every "
                    "cell: %d outside the categories or with nulls (or a missing person "
                    "key), %d beyond max_rows_per_person", request.party, request.dataset,
                    total - counted, total - fitting, fitting - counted)
    for column, values in request.categories:
        text = source.as_text(source.quote(column))
        outside_condition = f"{text} IS NULL OR NOT ({in_values(source, column, values)})"
        outside = [row[0] for row in source.run(
            f"SELECT DISTINCT {text} FROM {source.relation}"
            f"{where_clause([*scope, outside_condition])} LIMIT {MAX_LOGGED_VALUES}")]
        if outside:
            log.warning("%s: dataset %r, column %r: values outside the declared categories "
                        "(left out), e.g. %s", request.party, request.dataset, column,
                        sorted(outside, key=str))


def _check_integer(request: TableRequest, source: Source) -> None:
    """Refuse a sum over a non-integer column before counting anything."""
    column = request.measure.column
    assert column is not None
    col = source.quote(column)
    if source.dialect == "duckdb":
        type_name = str(source.run(f"DESCRIBE SELECT {col} FROM {source.relation}")[0][1])
        integer = type_name.upper() in _DUCKDB_INTEGER_TYPES
    elif source.dialect == "sqlite":
        # SQLite types values, not columns: a stored value that is not an integer is left
        # out (see _fits) rather than failing the job on one row.
        integer = True
    elif source.dialect == "postgresql":
        type_code = next(d[1] for d in source.description if str(d[0]) == column)
        integer = type_code in _POSTGRES_INTEGER_OIDS
    else:
        integer = True  # other databases: _as_int refuses any non-integer SUM result
    if not integer:
        raise request.error("must be an integer column", column=column)
