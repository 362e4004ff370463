"""report.html: structure checked with an HTML parser, then rendered by headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mpc.config.spec import DisclosureRules, UseCaseSpec, load_spec, parse_spec
from mpc.report.html import MAX_CHART_CELLS, write_report
from mpc.report.table import ReleasedTable
from tests.helpers import spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
RELEASED_AT = "2026-03-01T12:00:00+00:00"
QUARTERS = {"product": ["osimertinib", "durvalumab", "olaparib"],
            "quarter": ["2025Q1", "2025Q2", "2025Q3", "2025Q4"]}


class Page(HTMLParser):
    """The parts of report.html the tests look at: tables by id, <svg> per .chart."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.charts: list[int] = []  # <svg> elements in each .chart container
        self.pre: dict[str, str] = {}
        self._table: dict[str, list[dict[str, Any]]] | None = None
        self._section = "body"
        self._row: dict[str, Any] | None = None
        self._cell: dict[str, Any] | None = None
        self._pre: str | None = None
        self._chart_depth = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if self._chart_depth:
            self._chart_depth += 1  # inside a chart every element is closed (SVG, figcaption)
            self.charts[-1] += tag == "svg"
        elif "chart" in a.get("class", "").split():
            self._chart_depth = 1
            self.charts.append(0)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", ""), {"head": [], "body": []})
        elif tag in ("thead", "tbody"):
            self._section = "head" if tag == "thead" else "body"
        elif tag == "tr" and self._table is not None:
            self._row = {"attrs": a, "cells": []}
        elif tag in ("td", "th") and self._row is not None:
            self._cell = {"attrs": a, "text": ""}
        elif tag == "pre":
            self._pre = a.get("id", "")
            self.pre[self._pre] = ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._chart_depth:
            self.charts[-1] += tag == "svg"

    def handle_endtag(self, tag: str) -> None:
        if self._chart_depth:
            self._chart_depth -= 1
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._cell["text"] = self._cell["text"].strip()
            self._row["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self._table[self._section].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "pre":
            self._pre = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._pre is not None:
            self.pre[self._pre] += data


def classes(item: dict[str, Any]) -> set[str]:
    return set(item["attrs"].get("class", "").split())


def release(spec: UseCaseSpec, raw: np.ndarray, contributors: np.ndarray | None = None,
            *, zero_suppressed: bool = True) -> ReleasedTable:
    """The table a recipient would open, with the spec's own rules applied in the clear.
    zero_suppressed=False keeps the raw values in suppressed cells, which a real release never
    has: the report must not show them anyway."""
    if contributors is None:
        contributors = np.full(raw.shape, len(spec.parties))
    keep = np.array([spec.disclosure.keeps(int(v), int(c))
                     for v, c in zip(raw, contributors, strict=True)])
    value = np.where(keep, raw, 0) if zero_suppressed else raw.copy()
    return ReleasedTable(spec, spec.disclosure, "job-7f3a", keep, value, released_at=RELEASED_AT)


@pytest.fixture(scope="module")
def table3() -> ReleasedTable:
    """3 products x 5 indications x 3 lines: small cells, a cell with too few contributors,
    zeros, and a whole bar (one product, one indication) suppressed."""
    spec = parse_spec(spec_text("oncology-product-use", PARTIES, min_contributors=2))
    raw = (np.arange(spec.cells) * 37) % 140 + 10
    raw[[2, 7, 11, 20, 33]] = [4, 3, 7, 1, 8]  # below min_cell
    raw[[5, 14, 40]] = 0  # released zeros
    raw[[24, 25, 26]] = [2, 9, 5]  # durvalumab x ovarian: every line suppressed
    contributors = np.full(spec.cells, 3)
    contributors[17] = 1  # large but from one party only
    return release(spec, raw, contributors)


@pytest.fixture(scope="module")
def report3(table3: ReleasedTable, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(table3, tmp_path_factory.mktemp("report3"), job_seconds=83.4)


@pytest.fixture(scope="module")
def page3(report3: Path) -> Page:
    return Page(report3.read_text(encoding="utf-8"))


def test_table_has_one_row_per_cell_and_marks_suppressed_cells(table3: ReleasedTable,
                                                               page3: Page) -> None:
    released = page3.tables["released-table"]
    assert [c["text"] for c in released["head"][0]["cells"]] == [
        "product", "indication", "line", "value"]
    rows = released["body"]
    assert len(rows) == table3.spec.cells == 45
    assert table3.suppressed_cells == 9
    for row, combo, keep, value in zip(rows, table3.spec.category_rows(), table3.keep,
                                       table3.value, strict=True):
        *labels, cell = row["cells"]
        assert tuple(c["text"] for c in labels) == combo
        if keep:
            assert "suppressed" not in classes(row) | classes(cell)
            assert cell["attrs"]["data-value"] == str(value)
            assert cell["text"].replace(",", "") == str(value)
        else:
            assert "suppressed" in classes(row) and "suppressed" in classes(cell)
            assert cell["text"] == "suppressed" and "data-value" not in cell["attrs"]
            assert "below 10" in cell["attrs"]["title"]
            assert "fewer than 2 parties" in cell["attrs"]["title"]
    zeros = [r for r in rows if r["cells"][-1]["attrs"].get("data-value") == "0"]
    assert len(zeros) == 3 and all(r["cells"][-1]["text"] == "0" for r in zeros)


def test_margins_add_up_released_cells_only(tmp_path: Path) -> None:
    spec = parse_spec(spec_text("oncology-product-use", PARTIES))
    raw = (np.arange(spec.cells) * 53) % 90 + 10
    raw[[0, 1, 16, 44]] = [9, 2, 5, 1]
    # Raw values left in suppressed cells: the report must neither show nor add them.
    table = release(spec, raw, zero_suppressed=False)
    page = Page(write_report(table, tmp_path).read_text(encoding="utf-8"))
    keep = table.keep.reshape(3, -1)
    value = np.where(keep, raw.reshape(3, -1), 0)
    margins = page.tables["margins"]
    assert "total of released cells (suppressed cells not included)" in [
        c["text"] for c in margins["head"][0]["cells"]]
    *groups, grand = margins["body"]
    assert [g["cells"][0]["text"] for g in groups] == list(spec.categories[0][1])
    for i, group in enumerate(groups):
        assert int(group["cells"][1]["attrs"]["data-value"]) == value[i].sum()
        assert int(group["cells"][3]["text"]) == (~keep[i]).sum()
    assert grand["cells"][0]["text"] == "grand total"
    assert int(grand["cells"][1]["attrs"]["data-value"]) == value.sum() != raw.sum()
    cells = [r["cells"][-1] for r in page.tables["released-table"]["body"]]
    assert [c["text"] for c in cells if "suppressed" in classes(c)] == ["suppressed"] * 4


def test_header_names_the_release_and_the_rules(table3: ReleasedTable, report3: Path,
                                                page3: Page) -> None:
    text = report3.read_text(encoding="utf-8")
    spec = table3.spec
    assert spec.sha256 in text and "job-7f3a" in text and RELEASED_AT in text
    assert "hospital_a, hospital_b, hospital_c" in text
    assert 'id="recipients">coordinator<' in text
    assert "count</code> (number of records)" in text and "1 min 23 s" in text
    assert "Non-zero cells below 10 are suppressed (min_cell = 10)." in text
    assert "Zero cells are released as 0" in text
    assert "at least 2 parties have records in it, of the 3 parties" in text
    assert page3.pre["spec-text"] == spec.text.decode()
    assert "Only the disclosure-controlled table above was opened" in text
    assert "floors" not in text  # the rules applied are the spec's own


def test_stricter_rules_and_zero_suppression_are_explained(tmp_path: Path) -> None:
    spec = parse_spec(spec_text("strict", PARTIES, suppress_zero=True))
    raw = np.arange(spec.cells) % 30
    keep = np.array([v >= 20 for v in raw])
    rules = spec.disclosure.with_floors(DisclosureRules(min_cell=20, min_contributors=3))
    table = ReleasedTable(spec, rules, "job-s", keep, np.where(keep, raw, 0))
    text = write_report(table, tmp_path).read_text(encoding="utf-8")
    assert "Non-zero cells below 20 are suppressed (min_cell = 20)." in text
    assert "Zero cells are suppressed too" in text and "or it was zero" in text
    assert "raised to the parties&#39; own floors: the spec asked for min_cell = 10" in text


def test_one_stacked_chart_per_product_with_inline_svg(table3: ReleasedTable, report3: Path,
                                                       page3: Page) -> None:
    assert len(page3.charts) == 3 and all(n >= 1 for n in page3.charts)
    text = report3.read_text(encoding="utf-8")
    for product in table3.spec.categories[0][1]:
        assert f"<figcaption>product: {product}</figcaption>" in text
    # Several SVGs share one document: their ids (glyphs, clip paths, hatches) must not clash.
    ids = re.findall(r'\sid="([^"]+)"', text)
    assert len(ids) == len(set(ids))
    refs = re.findall(r'href="([^"]*)"', text) + re.findall(r"url\(([^)]*)\)", text)
    assert refs and all(r.startswith("#") and r[1:] in ids for r in refs)


def test_page_loads_nothing_from_anywhere(report3: Path) -> None:
    text = report3.read_text(encoding="utf-8")
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert re.search(r"\ssrc=", text) is None
    assert "default-src 'none'" in text


def test_two_dimensional_table(tmp_path: Path) -> None:
    spec = parse_spec(spec_text("product-quarter", PARTIES, group_by=("product", "quarter"),
                                categories=QUARTERS))
    raw = np.array([23, 4, 25, 0, 71, 53, 6, 19, 37, 0, 61, 37])
    table = release(spec, raw)
    page = Page(write_report(table, tmp_path).read_text(encoding="utf-8"))
    rows = page.tables["released-table"]["body"]
    assert len(rows) == 12
    assert [r["cells"][-1]["text"] for r in rows[:4]] == ["23", "suppressed", "25", "0"]
    assert sum("suppressed" in classes(r) for r in rows) == 2
    assert page.charts == [1]
    *groups, grand = page.tables["margins"]["body"]
    assert [int(g["cells"][1]["attrs"]["data-value"]) for g in groups] == [48, 143, 135]
    assert int(grand["cells"][1]["attrs"]["data-value"]) == 326


def test_one_dimensional_table_and_hostile_category_names(tmp_path: Path) -> None:
    names = ['<i>"x"</i> & co', "$5$ dose", "_rare", "--> end"]
    text = "\n".join([
        'name = "by-product"', 'kind = "aggregate"', 'parties = ["hospital_a", "hospital_b"]',
        "[input]", 'dataset = "treatments"', "[aggregate]", 'group_by = ["product"]',
        "[categories]", "product = [" + ", ".join(f"'{n}'" for n in names) + "]",
    ]) + "\n"
    spec = parse_spec(text.encode())
    table = release(spec, np.array([40, 3, 0, 1234567]))
    html = write_report(table, tmp_path).read_text(encoding="utf-8")
    page = Page(html)
    rows = page.tables["released-table"]["body"]
    assert [r["cells"][0]["text"] for r in rows] == names
    assert [r["cells"][1]["text"] for r in rows] == ["40", "suppressed", "0", "1,234,567"]
    assert "<i>" not in html and "&lt;i&gt;" in html
    assert page.charts == [1]
    (grand,) = page.tables["margins"]["body"]  # no per-value totals for one column
    assert grand["cells"][1]["attrs"]["data-value"] == "1234607"


def test_too_many_bars_leaves_the_chart_out(tmp_path: Path) -> None:
    categories = {"code": [f"c{i:04d}" for i in range(700)]}
    spec = parse_spec(spec_text("codes", PARTIES, group_by=("code",), categories=categories))
    table = release(spec, np.arange(700))
    html = write_report(table, tmp_path).read_text(encoding="utf-8")
    page = Page(html)
    assert page.charts == [] and "too many categories to chart (700 bars)" in html
    assert len(page.tables["released-table"]["body"]) == 700


def test_same_release_gives_the_same_file(table3: ReleasedTable, tmp_path: Path) -> None:
    first = write_report(table3, tmp_path / "a").read_bytes()
    assert write_report(table3, tmp_path / "b").read_bytes() == first


# Headless Chromium: the page as a browser renders it, offline.

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("chromium is not installed; the report's rendering test needs it "
                    "(Debian: apt-get install -y chromium)")
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    try:
        done = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"chromium did not finish within 60 s: {args}")
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_chromium_renders_table_and_charts(report3: Path, tmp_path: Path) -> None:
    dom = chromium(tmp_path, "--dump-dom", report3.as_uri()).stdout
    page = Page(dom)
    assert len(page.tables["released-table"]["body"]) == 45
    assert len(page.charts) == 3 and all(n >= 1 for n in page.charts)


def test_chromium_screenshot_is_not_blank(report3: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={png}", "--window-size=1280,2000", report3.as_uri())
    assert png.stat().st_size > 10_000
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        assert rgb.size == (1280, 2000)
        pixels = np.asarray(rgb).reshape(-1, 3).astype(int)
    assert len(np.unique(pixels, axis=0)) > 50
    # The charts' first series colour (#0072B2) is painted: the SVG rendered, not just text.
    assert (np.abs(pixels - (0x00, 0x72, 0xB2)).max(axis=1) <= 8).sum() > 1000


@pytest.mark.parametrize(("usecase", "counts", "scalar_words"), [
    ("hospital-insurer-linkage", "number of linked persons", "Linked persons"),
    ("patients-across-hospitals", "number of persons", "Distinct persons"),
])
def test_person_level_kinds_say_what_they_count(tmp_path: Path, usecase: str, counts: str,
                                                scalar_words: str) -> None:
    spec = load_spec(Path(__file__).parents[2] / "usecases" / f"{usecase}.toml")
    raw = np.arange(spec.cells + 1) * 7  # the cells, then the linked or distinct count
    keep = raw >= spec.disclosure.min_cell
    table = ReleasedTable(spec, spec.disclosure, "job-p", keep, np.where(keep, raw, 0))
    text = write_report(table, tmp_path).read_text(encoding="utf-8")
    assert f"({counts})" in text and "number of records" not in text
    # No contributor rule here: a cell of persons has no one-party subtotal to protect.
    assert "min_contributors" not in text.split('id="spec-text"')[0]
    shown = "suppressed" if not keep[-1] else f"{int(raw[-1]):,}"
    assert re.search(rf"{scalar_words}</dt>\s*<dd[^>]*>{shown}", text)


def test_a_large_table_is_collapsed_and_charts_only_what_is_readable(tmp_path: Path) -> None:
    # 20 x 50 x 10 = 10,000 cells: stacked charts of 500 segments, of which a page draws
    # only as many as stay quick to open; every cell is still in the (collapsed) table.
    categories = {"region": [f"r{i:02d}" for i in range(20)],
                  "week": [f"w{i:02d}" for i in range(50)],
                  "code": [f"k{i}" for i in range(10)]}
    spec = parse_spec(spec_text("big", PARTIES, group_by=("region", "week", "code"),
                                categories=categories))
    table = release(spec, (np.arange(spec.cells) * 7) % 90)
    html = write_report(table, tmp_path).read_text(encoding="utf-8")
    page = Page(html)
    assert len(page.charts) == MAX_CHART_CELLS // 500 < 20
    assert f"the first {len(page.charts)} of the 20 values of region" in html
    assert len(page.tables["released-table"]["body"]) == 10_000
    assert '<details id="released-details">' in html and 'href="result.csv"' in html


def test_too_many_segments_per_bar_leaves_the_charts_out(tmp_path: Path) -> None:
    categories = {"a": ["x", "y"], "b": ["p", "q"], "c": [f"c{i}" for i in range(13)]}
    spec = parse_spec(spec_text("wide", PARTIES, group_by=("a", "b", "c"),
                                categories=categories))
    html = write_report(release(spec, np.arange(spec.cells) + 10), tmp_path).read_text(
        encoding="utf-8")
    assert Page(html).charts == [] and "(13 segments per bar)" in html
    assert "<details" not in html  # 52 rows: shown open
