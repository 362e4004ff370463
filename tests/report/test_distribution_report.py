"""report.html for a distribution release: boxes from released quantiles, curves from
released points, suppressed groups marked, nothing withheld on the page."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mpc.config.rules import DisclosureRules
from mpc.config.spec import parse_spec
from mpc.protocols.distribution import SCALE
from mpc.report.html import write_report
from mpc.report.table import ReleasedTable

SPEC = b"""
name = "durations"
kind = "distribution"
parties = ["a", "b"]
[input]
dataset = "episodes"
[distribution]
group_by = ["product"]
measure = "duration_days"
censor = "censored"
bins = [0, 30, 90, 180]
quantiles = [0.25, 0.5, 0.75]
[categories]
product = ["p", "q", "r"]
"""


def release() -> ReleasedTable:
    """p: everything released but q75 not reached; q: suppressed; r: curve stops early."""
    spec = parse_spec(SPEC)
    per_group = 1 + 2 * 3 + 3
    keep = np.zeros(3 * per_group, dtype=bool)
    value = np.zeros(3 * per_group, dtype=np.int64)
    p = [40, 0, 1, 3, 20, 75, 180, int(0.7 * SCALE), int(0.45 * SCALE), int(0.3 * SCALE)]
    keep[:per_group], value[:per_group] = True, p
    r = [25, 0, 1, 0, 12, 61, 0, int(0.8 * SCALE), int(0.42 * SCALE), 0]
    keep[2 * per_group: 3 * per_group] = [True, True, True, False, True, True, False, True,
                                          True, False]
    value[2 * per_group: 3 * per_group] = r
    return ReleasedTable(spec, DisclosureRules(min_cell=10), "job", keep, value)


def test_report_shows_boxes_curves_and_marks_what_is_withheld(tmp_path: Path) -> None:
    page = write_report(release(), tmp_path).read_text()
    assert "quartiles per product" in page and "Kaplan-Meier curves" in page
    table = page[page.index('id="released-table"'):]
    assert "not reached by 180 days" in table  # p's q75
    assert "75 ([30, 90))" in table  # p's median with its bin
    assert table.count("suppressed") >= 5  # q's n and quantiles, r's q75
    assert "no whiskers" in page
    assert "None" not in table


def test_many_groups_are_tabled_not_charted(tmp_path: Path) -> None:
    spec = parse_spec(SPEC.replace(b'product = ["p", "q", "r"]', b"product = [" + b", ".join(
        f'"p{i}"'.encode() for i in range(1000)) + b"]"))
    size = spec.released_size
    table = ReleasedTable(spec, DisclosureRules(min_cell=10), "job",
                          np.zeros(size, dtype=bool), np.zeros(size, dtype=np.int64))
    page = write_report(table, tmp_path).read_text()
    assert "too many to chart" in page
    assert len(page.encode()) < 2_000_000
