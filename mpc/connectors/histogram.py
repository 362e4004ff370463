"""A party's local histogram: per group, how many rows' measure falls in each public bin,
events and censored rows apart, counted inside the party's engine.

The rows that count are those of the aggregate table (connectors/table.py): in the job's
scope, in the categories, within the party's contribution bound, and with a value in the
measure column (and the censoring column, if any). Bins are [e_0, e_1), ..., [e_m, inf);
a value below e_0 counts in the first bin. A row is censored when its censoring column is
true (booleans, 1/0, or the text true/t/yes/y/1 in any case). As for tables, nothing in
the scope can fail the count, and errors name the dataset and column, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from mpc.config.party import DatasetConfig
from mpc.connectors.engines import (
    Source,
    cell_indices,
    check_columns,
    check_list_bound,
    open_source,
)
from mpc.connectors.table import TableRequest, counted_rows, log_left_out, needed_columns

CENSORED_TEXT = ("true", "t", "yes", "y", "1")
_NUMERIC_DUCKDB = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                   "USMALLINT", "UINTEGER", "UBIGINT", "FLOAT", "DOUBLE", "REAL")
# PostgreSQL type OIDs of int2, int4, int8, float4, float8, numeric.
_NUMERIC_POSTGRES = frozenset({21, 23, 20, 700, 701, 1700})


@dataclass(frozen=True)
class HistogramRequest:
    table: TableRequest  # groups, scope and bounds; its value_columns are column (+ censor)
    column: str  # the measure, in days
    edges: tuple[int, ...]
    censor: str | None = None

    @classmethod
    def of(cls, table: TableRequest, column: str, edges: Sequence[int],
           censor: str | None) -> HistogramRequest:
        values = (column,) if censor is None else (column, censor)
        return cls(replace(table, value_columns=values), column, tuple(edges), censor)


def compute_local_histogram(dataset: DatasetConfig, request: HistogramRequest) -> np.ndarray:
    """(cells, bins, 2) int64: [..., 0] events, [..., 1] censored rows."""
    table = request.table
    counts = np.zeros((table.cells, len(request.edges), 2), dtype=np.int64)
    with open_source(dataset, table, text_columns=table.group_by) as source:
        check_columns(table, source, needed_columns(table))
        if table.person_key is not None and table.max_persons is not None:
            check_list_bound(table, source, table.person_key, table.max_persons)
        if not source.run(f"SELECT 1 FROM {source.relation} LIMIT 1"):
            return counts
        _check_numeric(request, source)
        log_left_out(table, source)
        quote = source.quote
        col = quote(request.column)
        cases = " ".join(f"WHEN {col} < {edge} THEN {k}"
                         for k, edge in enumerate(request.edges[1:]))
        bin_expr = f"CASE {cases} ELSE {len(request.edges) - 1} END"
        if request.censor is None:
            censored = "0"
        else:
            flag = f"LOWER({source.as_text(quote(request.censor))})"
            listed = ", ".join(f"'{v}'" for v in CENSORED_TEXT)
            censored = f"CASE WHEN {flag} IN ({listed}) THEN 1 ELSE 0 END"
        keys = [source.as_text(quote(c)) for c in table.group_by]
        select = ", ".join([*keys, f"{bin_expr} AS bin", f"{censored} AS censored",
                            "COUNT(*) AS n"])
        # A constant is never grouped by: engines read an integer there as a position.
        group = ", ".join([*keys, bin_expr, *([censored] if request.censor else [])])
        rows = source.run(f"SELECT {select} FROM {counted_rows(table, source)} "
                          f"GROUP BY {group}")
    k = len(table.group_by)
    cells = cell_indices(table, table.categories, (row[:k] for row in rows))
    for cell, row in zip(cells, rows, strict=True):
        counts[cell, int(row[k]), int(row[k + 1])] += int(row[k + 2])
    return counts


def _check_numeric(request: HistogramRequest, source: Source) -> None:
    """Refuse a measure column that is not numeric before counting anything (a text column
    would make the engine's comparisons fail on some value, naming it)."""
    col = source.quote(request.column)
    if source.dialect == "duckdb":
        type_name = str(source.run(f"DESCRIBE SELECT {col} FROM {source.relation}")[0][1])
        numeric = type_name.upper() in _NUMERIC_DUCKDB or type_name.upper().startswith(
            "DECIMAL")
    elif source.dialect == "postgresql":
        type_code = next(d[1] for d in source.description if str(d[0]) == request.column)
        numeric = type_code in _NUMERIC_POSTGRES
    else:
        numeric = True  # SQLite compares values of any type without failing
    if not numeric:
        raise request.table.error("must be a numeric column (days)", column=request.column)
