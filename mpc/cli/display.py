"""What the commands show on the terminal: a released table, and lines that carry text
from data, files or errors. Such text is never read as rich markup (it would drop
`[limits]` from "([limits] max_parties)"): it goes in `Text` or through `escape`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mpc.kinds import kind_of
from mpc.report.table import ReleasedTable

MAX_ROWS = 200


def say(console: Console, label: str, message: str, style: str = "red") -> None:
    """`label` in `style`, then `message` exactly as it is."""
    console.print(Text.assemble((label, style), " ", message))


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
    caption = f"suppressed: {table.suppressed_cells} of {spec.cells} {kind.row_words} ({rules})"
    # Title and caption are lines of their own: a table's wrap at the table's width, which
    # is narrow whatever the terminal's.
    rich_table = Table()
    columns, rows = next(iter(table.files().values()))
    shown = [c for c in columns if c != "suppressed"]
    for column in shown:
        rich_table.add_column(escape(column),
                              justify="left" if column in spec.group_by else "right")
    for row in rows[:MAX_ROWS]:
        cells = []
        for column in shown:
            value = row[column]
            if column in spec.group_by:
                cells.append(escape(str(value)))
            elif row["suppressed"] or value is None:
                cells.append("[dim]suppressed[/dim]" if row["suppressed"] else "[dim]-[/dim]")
            else:
                interval = f" ± {table.interval}" if table.interval else ""
                cells.append(escape(str(value)) + interval)
        rich_table.add_row(*cells)
    console.print(Text(title, style="bold"))
    console.print(rich_table)
    console.print(Text(caption, style="dim"))
    scalar = table.scalar()
    if scalar is not None:
        said = "suppressed" if scalar["suppressed"] else f"{scalar['value']:,}"
        console.print(f"{spec.scalar} persons: {said}", markup=False)
    if len(rows) > MAX_ROWS:
        console.print(f"... {len(rows) - MAX_ROWS} more rows in result.csv", markup=False)
