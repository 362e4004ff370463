"""A party's local table: one count (or sum) per category cell, computed in its own engine.

Every query here aggregates inside the engine (DuckDB for files, the party's database
through SQLAlchemy), so only one row per group ever reaches Python.

Error messages travel to the coordinator, which must learn nothing about the data: they
name the party, dataset and column, never a data value or a count of rows. Offending
values are logged locally only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from mpc.config.party import DatasetConfig
from mpc.config.spec import Measure, UseCaseSpec, Window
from mpc.connectors.engines import (
    Source,
    cell_indices,
    check_columns,
    open_source,
    sql_string,
)
from mpc.errors import ConfigError, DataError

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
    return _to_table(_groups(dataset, request), request)


# --- shared helpers -----------------------------------------------------------------


def _needed_columns(request: TableRequest) -> list[str]:
    needed = list(request.group_by)
    if request.measure.column is not None:
        needed.append(request.measure.column)
    if request.window is not None:
        needed.append(request.window.column)
    needed += [column for column, _ in request.filters]
    return needed


def _to_table(groups: list[tuple[Any, ...]], request: TableRequest) -> LocalTable:
    """Place (key..., n_rows, value) rows into cells, refusing nulls and unknown values."""
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
        check_columns(request, source, _needed_columns(request))
        if not source.run(f"SELECT 1 FROM {source.relation} LIMIT 1"):
            raise request.error("dataset has no rows")
        if request.measure.kind == "sum":
            _check_integer(request, source)
        return source.run(_group_query(request, source.relation, source.quote,
                                       source.as_text))


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
        conditions.append(f"{col} >= {sql_string(request.window.start)} AND "
                          f"{col} < {sql_string(request.window.end)}")
    for column, values in request.filters:
        listed = ", ".join(sql_string(v) for v in values)
        conditions.append(f"{as_text(quote(column))} IN ({listed})")
    if conditions:
        sql += " WHERE " + " AND ".join(f"({c})" for c in conditions)
    if keys:
        sql += " GROUP BY " + ", ".join(keys)
    return sql


def _check_integer(request: TableRequest, source: Source) -> None:
    """Refuse a sum over a non-integer column before counting anything."""
    column = request.measure.column
    assert column is not None
    col = source.quote(column)
    if source.dialect == "duckdb":
        type_name = str(source.run(f"DESCRIBE SELECT {col} FROM {source.relation}")[0][1])
        integer = type_name.upper() in _DUCKDB_INTEGER_TYPES
    elif source.dialect == "sqlite":
        # SQLite types values, not columns: look for any stored value that is not an integer.
        integer = not source.run(f"SELECT 1 FROM {source.relation} "
                                 f"WHERE typeof({col}) NOT IN ('integer', 'null') LIMIT 1")
    elif source.dialect == "postgresql":
        type_code = next(d[1] for d in source.description if str(d[0]) == column)
        integer = type_code in _POSTGRES_INTEGER_OIDS
    else:
        integer = True  # other databases: _as_int refuses any non-integer SUM result
    if not integer:
        raise request.error("must be an integer column", column=column)
