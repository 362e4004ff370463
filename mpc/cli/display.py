"""Showing a released table on the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from mpc.kinds import kind_of
from mpc.report.table import ReleasedTable

MAX_ROWS = 200


def print_released(table: ReleasedTable, console: Console) -> None:
    spec = table.spec
    kind = kind_of(spec.job)
    contributors = (f", min_contributors {table.rules.min_contributors}"
                    if kind.takes_contributor_rule else "")
    rules = (f"min_cell {table.rules.min_cell}{contributors}, suppress_zero "
             f"{str(table.rules.suppress_zero).lower()}")
    if spec.noise is not None:
        rules = (f"{spec.noise.mechanism} noise, epsilon {spec.noise.epsilon:g}; 95% of true "
                 f"values within ± {table.interval}; min_cell {table.rules.min_cell}")
    title = f"{spec.name}: {kind.terminal_title(spec)} by {', '.join(spec.group_by)}"
    rich_table = Table(title=title,
                       caption=f"suppressed: {table.suppressed_cells} of {spec.cells} cells "
                               f"({rules})")
    for column in spec.group_by:
        rich_table.add_column(column)
    rich_table.add_column("value", justify="right")
    rows = table.rows()
    for row in rows[:MAX_ROWS]:
        value = "[dim]suppressed[/dim]" if row["suppressed"] else str(row["value"])
        if table.interval and not row["suppressed"]:
            value += f" ± {table.interval}"
        rich_table.add_row(*(str(row[c]) for c in spec.group_by), value)
    console.print(rich_table)
    scalar = table.scalar()
    if scalar is not None:
        shown = "suppressed" if scalar["suppressed"] else f"{scalar['value']:,}"
        console.print(f"{spec.scalar} persons: {shown}")
    if len(rows) > MAX_ROWS:
        console.print(f"... {len(rows) - MAX_ROWS} more rows in result.csv")
