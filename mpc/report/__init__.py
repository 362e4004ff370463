"""Released results: reconstruction from recipients' shares, CSV and JSON files."""

from mpc.report.table import ReleasedTable, reconstruct, write_result

__all__ = ["ReleasedTable", "reconstruct", "write_result"]
