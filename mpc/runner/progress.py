"""Progress while a job runs: a live table of each party's phase on a terminal,
plain timestamped lines otherwise (logs, CI, pipes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from mpc.phases import Phase, label

# Keyed by phase (a StrEnum): the phases parties report arrive as their str values.
STYLES: dict[str, str] = {Phase.DONE: "green", Phase.RELEASED: "green", Phase.FAILED: "bold red"}
# The live display redraws this often whether or not a party reports anything, so its
# clock keeps moving through the long quiet phases (a job process starting takes seconds).
REFRESH_PER_SECOND = 4


class Progress:
    def __init__(self, parties: Sequence[str], console: Console | None = None,
                 title: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console or Console(stderr=True)
        self.parties = list(parties)
        self.title = title
        self.state: dict[str, tuple[str, str]] = dict.fromkeys(self.parties,
                                                               (Phase.PENDING, ""))
        self.clock = clock
        self.started = clock()
        self._live: Live | None = None

    def __call__(self, party: str, phase: str, detail: str = "") -> None:
        self.state[party] = (phase, detail)
        if self._live is not None:
            self._live.refresh()  # at once, not at the next tick
        else:
            text = label(phase) + (f" ({detail})" if detail else "")
            self.console.print(f"[{self.clock() - self.started:6.1f}s] {party}: {text}",
                               highlight=False, markup=False)

    def render(self) -> Group:
        """The display as it is now, its clock read afresh. The title and the clock are a
        line of their own above the table: a table's title wraps at the table's width,
        which is narrow whatever the terminal's."""
        elapsed = self.clock() - self.started
        # Text, not markup: a detail is a party's message, brackets and all.
        heading = Text.assemble((self.title, "bold"), "  " if self.title else "",
                                (f"{elapsed:.0f} s", "dim"))
        table = Table(expand=False)
        table.add_column("party")
        table.add_column("phase")
        table.add_column("detail", overflow="fold")
        for party in self.parties:
            phase, detail = self.state[party]
            table.add_row(Text(party), Text(label(phase)), Text(detail),
                          style=STYLES.get(phase))
        return Group(heading, table)

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            # get_renderable: every refresh, the timed ones included, renders anew.
            self._live = Live(console=self.console, get_renderable=self.render,
                              auto_refresh=True, refresh_per_second=REFRESH_PER_SECOND)
            self._live.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.refresh()  # the last state stays on the screen
            self._live.stop()
            self._live = None
