"""report.html for a distribution release: one box per released group from its released
quantiles, curves through their released points only, "not reached" quantiles and suppressed
groups marked, and nothing withheld anywhere on the page.

The releases are laid out by hand as protocols/distribution.Layout has them: per group n, the
Q quantile bins, the Q quantile values, then the m curve points scaled by SCALE."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.kinds.distribution import DistributionJob
from mpc.protocols.distribution import SCALE
from mpc.report.html import write_report
from mpc.report.table import ReleasedTable
from tests.report.test_html import Page, classes

EDGES = (0, 30, 60, 90, 120, 180, 270, 365, 450, 540, 730, 1095)
M = len(EDGES) - 1
RELEASED_AT = "2026-03-01T12:00:00+00:00"
# What a hand-made release holds in its withheld slots when `junk` is asked for: a real release
# has zeros there, and the page must not change either way.
JUNK_N, JUNK_BIN, JUNK_DAYS, JUNK_S = 4321, 3, 987, 0.123457


def spec_text(products: Sequence[str], lines: Sequence[str] = ("1", "2", "3+"), *,
              censor: bool = True, min_cell: int = 10) -> bytes:
    def quoted(values: Sequence[str]) -> str:
        return "[" + ", ".join(f'"{v}"' for v in values) + "]"

    return f"""
name = "treatment-duration"
kind = "distribution"
parties = ["hospital_a", "hospital_b", "hospital_c"]
recipients = ["coordinator"]
[input]
dataset = "treatment_episodes"
[distribution]
group_by = ["product", "line"]
measure = "duration_days"
{'censor = "censored"' if censor else ""}
bins = [{", ".join(str(e) for e in EDGES)}]
quantiles = [0.25, 0.5, 0.75]
[categories]
product = {quoted(products)}
line = {quoted(lines)}
[disclosure]
min_cell = {min_cell}
""".encode()


@dataclass(frozen=True)
class G:
    """One group's release: None where withheld."""

    n: int | None
    quantiles: tuple[tuple[int, int] | None, ...] = ()  # (bin, days) per quantile
    curve: tuple[float | None, ...] = ()  # S(e_1) .. S(e_m)


def full(n: int, rate: float) -> G:
    """Every piece released: an exponential curve and its quartiles, read as the protocol
    does (the first bin at whose right edge S <= 1 - q, interpolated linearly in S)."""
    s = [1.0] + [float(np.exp(-rate * e)) for e in EDGES[1:]]
    quantiles: list[tuple[int, int]] = []
    for q in (0.25, 0.5, 0.75):
        b = next((k for k in range(M) if s[k + 1] <= 1 - q), M)
        days = EDGES[-1] if b == M else round(
            EDGES[b] + (EDGES[b + 1] - EDGES[b]) * (s[b] - (1 - q)) / (s[b] - s[b + 1]))
        quantiles.append((b, days))
    return G(n, tuple(quantiles), tuple(s[1:]))


def release(spec: UseCaseSpec, groups: Sequence[G], *, junk: bool = False) -> ReleasedTable:
    job = spec.job
    assert isinstance(job, DistributionJob)
    q = len(job.quantiles)
    per_group = job.layout().per_group
    assert per_group == 1 + 2 * q + M and len(groups) == spec.cells
    keep = np.zeros(spec.cells * per_group, dtype=bool)
    value = np.zeros(spec.cells * per_group, dtype=np.int64)
    for g, group in enumerate(groups):
        base = g * per_group
        slots: list[tuple[int, int | None, int]] = [(base, group.n, JUNK_N)]
        for i in range(q):
            got = group.quantiles[i] if group.quantiles else None
            slots += [(base + 1 + i, None if got is None else got[0], JUNK_BIN),
                      (base + 1 + q + i, None if got is None else got[1], JUNK_DAYS)]
        for k in range(M):
            s = group.curve[k] if group.curve else None
            slots.append((base + 1 + 2 * q + k, None if s is None else int(s * SCALE),
                          int(JUNK_S * SCALE)))
        for at, v, withheld in slots:
            keep[at] = v is not None
            value[at] = v if v is not None else (withheld if junk else 0)
    return ReleasedTable(spec, spec.disclosure, "job-d1", keep, value,
                         released_at=RELEASED_AT)


def svg_group(html: str, gid: str) -> str | None:
    """The text of the SVG group with id `gid` (its first closing tag: the groups looked at
    here hold no nested group)."""
    start = html.find(f'<g id="{gid}">')
    return None if start < 0 else html[start: html.index("</g>", start)]


def ids(html: str, pattern: str) -> set[int]:
    return {int(g) for g in re.findall(pattern, html)}


PRODUCTS = ("osimertinib", "durvalumab", "olaparib")


def nine() -> list[G]:
    """3 products x 3 lines. g1: q50 and q75 not reached; g2: suppressed; g3: the curve stops
    after 5 points, so q75 is withheld; g4: no episode (n = 0 released); g7: the curve stops
    after 2 points, only q25 is released."""
    g3, g7 = full(197, 0.005), full(130, 0.006)
    return [full(230, 0.0035), full(124, 0.0004), G(None),
            G(197, (*g3.quantiles[:2], None), (*g3.curve[:5], *[None] * (M - 5))),
            G(0), full(121, 0.004), full(45, 0.0037),
            G(130, (g7.quantiles[0], None, None), (*g7.curve[:2], *[None] * (M - 2))),
            full(147, 0.0045)]


@pytest.fixture(scope="module")
def nine_table() -> ReleasedTable:
    return release(parse_spec(spec_text(PRODUCTS)), nine(), junk=True)


@pytest.fixture(scope="module")
def nine_html(nine_table: ReleasedTable, tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_report(nine_table, tmp_path_factory.mktemp("nine")).read_text("utf-8")


def test_one_box_per_released_group_and_suppressed_groups_marked(nine_html: str) -> None:
    page = Page(nine_html)
    assert len(page.charts) == 2 and page.charts == [1, 1]  # boxes, curves
    boxes = ids(nine_html, r'id="boxes-box(?:-open|-partial)?-g(\d+)"')
    assert boxes == {0, 1, 3, 5, 6, 8}  # every group with its q25 and more released
    assert ids(nine_html, r'id="boxes-box-partial-g(\d+)"') == {3}
    assert ids(nine_html, r'id="boxes-box-open-g(\d+)"') == {1}
    assert ids(nine_html, r'id="boxes-median-g(\d+)"') == {0, 3, 5, 6, 8}
    assert ids(nine_html, r'id="boxes-suppressed-g(\d+)"') == {2, 4}
    assert ids(nine_html, r'id="boxes-withheld-g(\d+)"') == {3, 7}
    assert ids(nine_html, r'id="boxes-tick-g(\d+)-0"') == {7}  # q25 alone: a tick, no box
    assert "<!-- q50, q75 suppressed -->" in nine_html  # g7
    assert "<!-- q75 suppressed -->" in nine_html  # g3
    assert "<!-- 3+  (suppressed) -->" in nine_html  # g2's label, greyed
    assert "<!-- 2  (no episodes) -->" in nine_html  # g4's
    assert "No whiskers: the minimum and maximum are never released." in nine_html


def test_curves_show_only_released_points_and_where_they_stop(nine_html: str) -> None:
    groups = nine()
    for i, g in enumerate(groups):
        line, points = (svg_group(nine_html, f"curves-km-{what}-g{i}")
                        for what in ("line", "points"))
        if not g.n:  # suppressed, or no episode: no curve at all
            assert line is None and points is None
            continue
        released = sum(s is not None for s in g.curve)
        assert line is not None and points is not None
        assert points.count("<use") == released
        stops = svg_group(nine_html, f"curves-km-stop-g{i}")
        assert (stops is not None) == (released < M), i
    assert svg_group(nine_html, "curves-median-ref-0") is not None  # S = 0.5, dashed
    assert "<!-- 3+: suppressed -->" in nine_html  # a panel names what it leaves out
    assert "<!-- 2: no episodes -->" in nine_html
    assert "<!-- Kaplan-Meier curves of duration_days -->" in nine_html
    assert "curve stops: fewer than 10 episodes behind the next point" in nine_html


def test_a_quantile_not_reached_is_shown_as_such(nine_html: str) -> None:
    arrow = svg_group(nine_html, "boxes-not-reached-label-g1")
    assert arrow is not None and "<!-- q50, q75: not reached -->" in arrow
    assert ids(nine_html, r'id="boxes-not-reached-g(\d+)"') == {1}
    row = Page(nine_html).tables["released-table"]["body"][1]
    texts = [c["text"] for c in row["cells"]]
    assert texts[:3] == ["osimertinib", "2", "124"]
    assert texts[5:] == ["not reached", "[1095, inf)", "not reached", "[1095, inf)"]
    assert "beyond" in classes(row["cells"][5])
    assert "data-value" not in row["cells"][5]["attrs"]  # no value: e_m is not one


def test_table_is_result_csv_with_suppressed_groups_marked(nine_table: ReleasedTable,
                                                           nine_html: str) -> None:
    table = Page(nine_html).tables["released-table"]
    assert [c["text"] for c in table["head"][0]["cells"]] == [
        "product", "line", "n", "q25 (days)", "q25 bin", "q50, median (days)", "q50 bin",
        "q75 (days)", "q75 bin"]
    rows = table["body"]
    csv_rows = nine_table.rows()
    assert len(rows) == len(csv_rows) == 9
    for row, expected in zip(rows, csv_rows, strict=True):
        cells = row["cells"]
        assert (cells[0]["text"], cells[1]["text"]) == (expected["product"], expected["line"])
        if expected["suppressed"]:
            assert "suppressed" in classes(row) and cells[2]["text"] == "suppressed"
            assert "fewer than 10 episodes" in cells[2]["attrs"]["title"]
            continue
        assert "suppressed" not in classes(row)
        assert cells[2]["attrs"]["data-value"] == str(expected["n"])
        for k, name in enumerate(("q25", "q50", "q75")):
            shown, bin_cell = cells[3 + 2 * k], cells[4 + 2 * k]
            if expected[name] is not None:
                assert shown["attrs"]["data-value"] == str(expected[name])
                assert bin_cell["text"] == expected[f"{name}_bin"]
            elif expected[f"{name}_bin"] is None and expected["n"]:
                assert shown["text"] == "suppressed" and "suppressed" in classes(shown)
    assert [c["text"] for c in rows[3]["cells"][7:]] == ["suppressed", "–"]  # g3's q75


def test_the_page_holds_no_withheld_value(nine_table: ReleasedTable, nine_html: str,
                                          tmp_path: Path) -> None:
    # The same release with zeros in its withheld slots (as a real one has) gives the very
    # same page: nothing on it, chart geometry included, comes from a withheld slot.
    # Both rendered here, one after the other: matplotlib's text metrics can differ in the
    # last bits between a process's first renderings and later ones, which moves a clip box.
    clean = release(nine_table.spec, nine(), junk=False)
    with_junk = write_report(nine_table, tmp_path / "junk").read_text("utf-8")
    assert write_report(clean, tmp_path / "clean").read_text("utf-8") == with_junk
    shown = nine_html[nine_html.index('id="how-to-read"'):nine_html.index('id="spec-text"')]
    text = re.sub(r"<svg.*?</svg>", "", shown, flags=re.S)
    for junk in (str(JUNK_N), f"{JUNK_N:,}", str(JUNK_DAYS), "0.1234"):
        assert junk not in text
    assert "None" not in text


def test_header_rules_and_reading_guide(nine_html: str) -> None:
    assert re.search(r"<dt>Groups</dt><dd>9 in all, 1 suppressed</dd>", nine_html)
    assert "<code>duration_days</code>" in nine_html
    assert "Groups with fewer than 10 episodes are suppressed (min_cell = 10)" in nine_html
    assert "Non-zero cells" not in nine_html and 'id="margins"' not in nine_html
    reading = nine_html[nine_html.index('id="how-to-read"'):nine_html.index("<h2>Charts")]
    for words in ("median (q50)", "censored", "not reached", "fewer than 10 episodes",
                  "no whiskers", "interpolated linearly"):
        assert words in reading
    ids_ = re.findall(r'\sid="([^"]+)"', nine_html)
    assert len(ids_) == len(set(ids_))
    refs = re.findall(r'href="([^"]*)"', nine_html) + re.findall(r"url\(([^)]*)\)", nine_html)
    assert refs and all(r.startswith("#") and r[1:] in ids_ for r in refs)
    assert "<script" not in nine_html and re.search(r"\ssrc=", nine_html) is None


def test_without_censoring_a_late_quantile_is_at_or_beyond_the_last_edge(
        tmp_path: Path) -> None:
    spec = parse_spec(spec_text(PRODUCTS, censor=False))
    groups = [full(50 + i, 0.0004 if i == 0 else 0.004) for i in range(spec.cells)]
    html = write_report(release(spec, groups), tmp_path).read_text("utf-8")
    assert "<!-- q50, q75: ≥ 1095 days -->" in html
    assert "<!-- Share of episodes still going, duration_days -->" in html
    cells = Page(html).tables["released-table"]["body"][0]["cells"]
    assert [c["text"] for c in cells[5:]] == ["≥ 1095 days", "[1095, inf)"] * 2
    assert "censored" not in html.split('id="how-to-read"')[1].split("</section>")[0]


def test_45_groups_are_all_charted(tmp_path: Path) -> None:
    spec = parse_spec(spec_text([f"drug_{i:02d}" for i in range(15)]))
    groups = [G(None) if i % 11 == 4 else full(40 + i, 0.001 + 0.0001 * i) for i in range(45)]
    html = write_report(release(spec, groups), tmp_path).read_text("utf-8")
    boxes = ids(html, r'id="boxes-box(?:-open)?-g(\d+)"')
    suppressed = ids(html, r'id="boxes-suppressed-g(\d+)"')
    assert suppressed == {4, 15, 26, 37} and boxes == set(range(45)) - suppressed
    assert ids(html, r'id="curves-km-line-g(\d+)"') == boxes
    assert 'id="chart-note"' not in html
    assert len(Page(html).tables["released-table"]["body"]) == 45


def test_1000_groups_chart_the_first_and_table_them_all(tmp_path: Path) -> None:
    spec = parse_spec(spec_text([f"drug_{i:03d}" for i in range(250)],
                                ("1", "2", "3", "4+")))
    groups = [G(None) if i % 7 == 0 else full(50, 0.002 + 0.00001 * (i % 50))
              for i in range(1000)]
    path = write_report(release(spec, groups), tmp_path)
    assert path.stat().st_size < 3_000_000
    html = path.read_text("utf-8")
    charted = (ids(html, r'id="boxes-box(?:-open)?-g(\d+)"')
               | ids(html, r'id="boxes-suppressed-g(\d+)"'))
    assert charted == set(range(60))  # 15 products of 4 lines
    assert ("The charts show the first 15 of 250 values of product (60 of 1000 groups)"
            in html)
    assert len(Page(html).tables["released-table"]["body"]) == 1000
    assert re.search(r"<dt>Groups</dt><dd>1000 in all, 143 suppressed</dd>", html)
