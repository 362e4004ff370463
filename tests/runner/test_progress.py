"""The progress display: its clock moves while no party reports anything, it says what a
party is doing (a job process starting), its title stays on one line, and off a terminal
it prints plain lines. A fake clock; no processes."""

from __future__ import annotations

import io
import time

from rich.console import Console

from mpc.phases import Phase
from mpc.runner.progress import Progress
from mpc.worker.service import STARTING_JOB_PROCESS

PARTIES = ["hospital_a", "hospital_b"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def console(terminal: bool = False, width: int = 200) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=width, color_system=None), out


def rendered(progress: Progress) -> str:
    shown, out = console()
    shown.print(progress.render())
    return out.getvalue()


def test_the_clock_moves_without_a_phase_change() -> None:
    clock = Clock()
    progress = Progress(PARTIES, console=console()[0], title="job x", clock=clock)
    progress("hospital_a", Phase.ACCEPTED, STARTING_JOB_PROCESS)
    clock.now += 3
    first = rendered(progress)
    clock.now += 4  # nobody reports anything meanwhile
    second = rendered(progress)
    assert first.splitlines()[0] == "job x  3 s"
    assert second.splitlines()[0] == "job x  7 s"
    assert first.splitlines()[1:] == second.splitlines()[1:]  # the table is as it was


def test_the_live_display_redraws_on_its_own() -> None:
    """On a terminal the display refreshes by itself, each time reading the clock."""
    clock = Clock()
    shown, out = console(terminal=True)
    with Progress(PARTIES, console=shown, title="job x", clock=clock):
        clock.now += 42
        deadline = time.monotonic() + 10  # a bound on a wait, not a measurement
        while "job x  42 s" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "job x  42 s" in out.getvalue()


def test_a_party_starting_its_job_process_says_so() -> None:
    progress = Progress(PARTIES, console=console()[0], clock=Clock())
    progress("hospital_a", Phase.ACCEPTED, STARTING_JOB_PROCESS)
    [row] = [line for line in rendered(progress).splitlines() if "hospital_a" in line]
    assert "policy approved" in row and "starting job process" in row


def test_a_long_title_stays_on_one_line_on_a_wide_terminal() -> None:
    title = "job oncology-product-use-dp-with-a-name-wider-than-the-table-is"
    progress = Progress(PARTIES, console=console()[0], title=title, clock=Clock())
    lines = rendered(progress).splitlines()
    assert lines[0] == f"{title}  0 s"
    assert len(title) > max(len(line) for line in lines[1:])  # wider than the table


def test_off_a_terminal_each_change_is_a_plain_line() -> None:
    clock = Clock()
    shown, out = console(terminal=False)
    with Progress(PARTIES, console=shown, title="job x", clock=clock) as progress:
        clock.now += 0.1
        progress("hospital_a", Phase.ACCEPTED, STARTING_JOB_PROCESS)
        clock.now += 6.3
        progress("hospital_a", Phase.LOCAL_TABLE, "9 cells")
    assert out.getvalue() == ("[   0.1s] hospital_a: policy approved (starting job process)\n"
                              "[   6.4s] hospital_a: local table (9 cells)\n")
