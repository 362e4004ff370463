"""Data connectors: each party's local table, counted where its data lives.

CSV and Parquet files go through DuckDB; SQL databases through SQLAlchemy. In both
cases the GROUP BY is pushed down into the engine, so only one row per group
comes back into Python, never the party's records.
"""

from mpc.connectors.table import LocalTable, TableRequest, compute_local_table

__all__ = ["LocalTable", "TableRequest", "compute_local_table"]
