"""Progress while a job runs: a live table of each party's phase on a terminal,
plain timestamped lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mpc.phases import Phase, label

# Keyed by phase (a StrEnum): the phases parties report arrive as their str values.
STYLES: dict[str, str] = {Phase.DONE: "green", Phase.RELEASED: "green", Phase.FAILED: "bold red"}


class Progress:
    def __init__(self, parties: Sequence[str], console: Console | None = None,
                 title: str = "") -> None:
        self.console = console or Console(stderr=True)
        self.parties = list(parties)
        self.title = title
        self.state: dict[str, tuple[str, str]] = dict.fromkeys(self.parties,
                                                               (Phase.PENDING, ""))
        self.started = time.monotonic()
        self._live: Live | None = None

    def __call__(self, party: str, phase: str, detail: str = "") -> None:
        self.state[party] = (phase, detail)
        if self._live is not None:
            self._live.update(self._table())
        else:
            text = label(phase) + (f" ({detail})" if detail else "")
            self.console.print(f"[{time.monotonic() - self.started:6.1f}s] {party}: {text}",
                               highlight=False, markup=False)

    def _table(self) -> Table:
        # Text, not markup: a detail is a party's message, brackets and all.
        table = Table(title=escape(self.title) or None, expand=False)
        table.add_column("party")
        table.add_column("phase")
        table.add_column("detail", overflow="fold")
        for party in self.parties:
            phase, detail = self.state[party]
            table.add_row(Text(party), Text(label(phase)), Text(detail),
                          style=STYLES.get(phase))
        table.caption = f"{time.monotonic() - self.started:.1f} s"
        return table

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.update(self._table())
            self._live.__exit__(exc_type, exc, tb)
            self._live = None
