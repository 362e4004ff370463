"""Benchmark writing report.html for large released tables, against writing result.csv.

    python scripts/bench_report.py [--cells 10000] [--repeat 3]

For each shape of a table of about `cells` cells (one column; two; three, with the most
charts a page draws; four), it times write_report and write_result (result.csv and
result.json, the plain files every release writes) on the same table, and prints the
page's size and the ratio of the two times. The aim: report.html for 10,000 cells in
under 5 s and under 2 MB, whatever the shape.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpc.config.spec import UseCaseSpec, parse_spec  # noqa: E402
from mpc.report.html import write_report  # noqa: E402
from mpc.report.table import ReleasedTable, write_result  # noqa: E402

TARGET_SECONDS = 5.0
TARGET_BYTES = 2_000_000


def shapes(cells: int) -> dict[str, tuple[int, ...]]:
    side = max(2, round(math.sqrt(cells)))
    fourth = max(2, round(cells ** 0.25))
    return {
        "one column": (cells,),
        "two columns": (side, max(1, cells // side)),
        # 10 segments a bar and 50 bars a chart: the largest stacked charts a page draws.
        "three columns, charted": (max(1, cells // 500), 50, 10),
        "three columns": (max(1, cells // 500), 20, 25),
        "four columns": (fourth,) * 4,
    }


def spec_of(shape: tuple[int, ...]) -> UseCaseSpec:
    columns = [f"c{i}" for i in range(len(shape))]
    lines = ['name = "bench-report"', 'kind = "aggregate"', 'parties = ["a", "b", "c"]',
             'recipients = ["coordinator"]', "[input]", 'dataset = "treatments"',
             "[aggregate]", f"group_by = {columns!r}".replace("'", '"'), 'measure = "count"',
             "[categories]"]
    for column, n in zip(columns, shape, strict=True):
        values = ", ".join(f'"{column}-{j:05d}"' for j in range(n))
        lines.append(f"{column} = [{values}]")
    lines += ["[disclosure]", "min_cell = 10", "min_contributors = 1", "suppress_zero = false"]
    return parse_spec(("\n".join(lines) + "\n").encode())


def released(spec: UseCaseSpec, seed: int) -> ReleasedTable:
    raw = np.random.default_rng(seed).poisson(25, spec.cells)
    keep = raw >= 10  # about 1 in 500 cells suppressed, and some whole bars with them
    return ReleasedTable(spec, spec.disclosure, "bench", keep, np.where(keep, raw, 0))


def best_of(repeat: int, write: Callable[[ReleasedTable, Path], Path], table: ReleasedTable,
            out: Path) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        write(table, out)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    write_report(released(spec_of((3, 4)), 0), Path(tempfile.mkdtemp()))  # imports, once
    print(f"{'shape':<24} {'cells':>7} {'charts':>6} {'report.html':>12} {'size':>9} "
          f"{'result.csv':>11} {'ratio':>6}")
    failed = False
    for name, shape in shapes(args.cells).items():
        table = released(spec_of(shape), 1)
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder)
            report = best_of(args.repeat, write_report, table, out)
            csv = best_of(args.repeat, write_result, table, out / "result")
            page = (out / "report.html").read_text(encoding="utf-8")
        charts = page.count('<figure class="chart">')
        size = len(page.encode())
        ok = report < TARGET_SECONDS and size < TARGET_BYTES
        failed |= not ok
        print(f"{name:<24} {table.spec.cells:>7,} {charts:>6} {report:>10.2f} s "
              f"{size / 1e6:>6.2f} MB {csv:>9.3f} s {report / csv:>5.0f}x"
              f"{'' if ok else '  over the target'}")
    print(f"target: under {TARGET_SECONDS:g} s and {TARGET_BYTES / 1e6:g} MB for each shape")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
