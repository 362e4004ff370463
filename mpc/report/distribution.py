"""report.html's parts for a distribution release: box plots per group from the released
quantiles, the survival curves through their released points, the table of result.csv and a
reading guide.

Everything drawn or written comes from `decode`: a withheld n, quantile or curve point is None
there, and nothing here reads the release vector itself. There are no whiskers (minimum and
maximum are never released). A quantile beyond the last edge has no value: it is drawn as an
open end with an arrow at that edge. Each drawn piece carries an SVG id naming its group
(`box-g3`, `km-points-g3`, ...), so that what the page shows can be checked.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpc.config.rules import DisclosureRules
from mpc.kinds.distribution import DistributionJob, GroupResult, decode, quantile_name
from mpc.report.html import _STYLE, SUPPRESSED_COLOUR, _colour, _label, _svg
from mpc.report.table import ReleasedTable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Past these, boxes and curves are unreadable; the table and the CSV files have every group.
MAX_CHART_GROUPS = 60
MAX_PANELS = 18  # one panel per value of the first group_by column
MAX_CURVES = 8  # curves in one panel; a panel with more is split
INK = "#1d2430"
BOX, MEDIAN, OTHER = 0.25, 0.5, 0.75


@dataclass(frozen=True)
class Group:
    """One group as the page draws it."""

    index: int  # in category order: the ids' gN
    result: GroupResult
    panel: str | None  # the first column's value, with two or more group_by columns
    series: str  # the other columns' values (or the one column's)
    colour: int  # the same series has the same colour in every panel and chart


def rules_basics(rules: DisclosureRules) -> list[str]:
    """The disclosure paragraph's first lines, in groups and episodes."""
    k = rules.min_cell
    return [
        f"Groups with fewer than {k} episodes are suppressed (min_cell = {k}): neither their "
        "n, nor any quantile, nor any curve point is released.",
        "Groups without any episode are suppressed too (suppress_zero = true)."
        if rules.suppress_zero else
        "A group without any episode is released as n = 0 (suppress_zero = false), with no "
        "quantile and no curve.",
    ]


def distribution_context(table: ReleasedTable) -> dict[str, Any]:
    """The template's `grouped` block: the reading guide, charts, notes and the table."""
    spec, rules = table.spec, table.rules
    job = spec.job
    assert isinstance(job, DistributionJob)
    groups = _groups(table)
    panels = _panels(groups)
    charted, whole = _charted(panels)
    charts: list[dict[str, Any]] = []
    if charted:
        from matplotlib import rc_context

        with rc_context(_STYLE):
            charts = [_boxes(job, rules, charted), _curves(job, rules, charted)]
    total = len(groups)
    shown = sum(len(members) for _, members in charted)
    note = None
    if shown < total:
        part = (f"the first {len(charted)} of {len(panels)} values of {spec.group_by[0]} "
                f"({shown} of {total} groups)" if whole and len(panels) > 1
                else f"the first {shown} of {total} groups")
        note = (f"The charts show {part}: more would be unreadable. Every group is in the "
                "table below and in result.csv, every curve point in curve.csv.")
    return {
        "reading": _reading(spec.group_by, job, rules),
        "charts": charts,
        "note": note,
        "columns": _columns(job),
        "rows": [_row(job, rules, g) for g in groups],
        "groups": total,
        "suppressed": sum(g.result.suppressed for g in groups),
        "group_title": _group_title(rules),
        "curve_words": ("the Kaplan-Meier estimate of the share still going" if job.censor
                        else "the share of episodes still going"),
    }


# ---- groups and panels ----------------------------------------------------------------------


def _groups(table: ReleasedTable) -> list[Group]:
    spec = table.spec
    labels = [values for _, values in spec.categories]
    several = len(labels) >= 2
    rest = {combo: i for i, combo in enumerate(itertools.product(*labels[1:]))}
    out = []
    for i, result in enumerate(decode(table)):
        combo = result.categories
        if several:
            out.append(Group(i, result, combo[0], " / ".join(combo[1:]), rest[combo[1:]]))
        else:
            out.append(Group(i, result, None, combo[0], i))
    return out


def _panels(groups: list[Group]) -> list[tuple[str | None, list[Group]]]:
    """Per value of the first column (with several columns) its groups; else one panel."""
    return [(panel, list(members))
            for panel, members in itertools.groupby(groups, key=lambda g: g.panel)]


def _charted(panels: list[tuple[str | None, list[Group]]]
             ) -> tuple[list[tuple[str | None, list[Group]]], bool]:
    """The panels the charts show (within MAX_CHART_GROUPS and MAX_PANELS; a first panel
    larger than that is cut), and whether they are whole panels."""
    taken: list[tuple[str | None, list[Group]]] = []
    count = 0
    for panel, members in panels:
        if count + len(members) > MAX_CHART_GROUPS or len(taken) >= MAX_PANELS:
            if not taken:
                return [(panel, members[:MAX_CHART_GROUPS])], False
            break
        taken.append((panel, members))
        count += len(members)
    return taken, True


# ---- what a quantile shows --------------------------------------------------------------


def _beyond(job: DistributionJob, b: int) -> bool:
    return b >= len(job.edges) - 1


def _beyond_words(job: DistributionJob) -> str:
    last = job.edges[-1]
    return "not reached" if job.censor else f"≥ {last} days"


def _find(job: DistributionJob, q: float) -> int | None:
    for i, have in enumerate(job.quantiles):
        if abs(have - q) < 1e-9:
            return i
    return None


def _boxed(job: DistributionJob) -> bool:
    return _find(job, BOX) is not None and _find(job, OTHER) is not None


# ---- the table ----------------------------------------------------------------------------


def _group_title(rules: DisclosureRules) -> str:
    reasons = [f"fewer than {rules.min_cell} episodes"]
    if rules.min_contributors > 1:
        reasons.append(f"episodes from fewer than {rules.min_contributors} parties")
    if rules.suppress_zero:
        reasons.append("no episode at all")
    return ("Suppressed by the disclosure rules: " + ", or ".join(reasons) + ". Neither the "
            "values nor which rule applied was ever revealed, to anyone.")


def _quantile_title(rules: DisclosureRules) -> str:
    return (f"Suppressed: the curve around this quantile rests on fewer than {rules.min_cell} "
            "episodes (at risk, or ending in a step of the curve), so its points at the ends "
            "of the quantile's bin were not released.")


def _columns(job: DistributionJob) -> list[str]:
    columns = ["n"]
    for q in job.quantiles:
        name = quantile_name(q)
        columns += [f"{name}, median (days)" if abs(q - MEDIAN) < 1e-9 else f"{name} (days)",
                    f"{name} bin"]
    return columns


def _cell(text: str, cls: str = "", title: str = "", value: int | None = None
          ) -> dict[str, Any]:
    return {"text": text, "cls": cls, "title": title, "value": value}


def _row(job: DistributionJob, rules: DisclosureRules, g: Group) -> dict[str, Any]:
    r = g.result
    cells: list[dict[str, Any]] = []
    if r.n is None:
        title = _group_title(rules)
        cells.append(_cell("suppressed", "value suppressed", title))
        cells += [_cell("–", "value suppressed", title) for _ in range(2 * len(r.quantiles))]
        return {"categories": r.categories, "status": "suppressed", "cells": cells}
    cells.append(_cell(f"{r.n:,}", "value", value=r.n))
    if r.n == 0:
        cells += [_cell("–", "value", "no episode in this group")
                  for _ in range(2 * len(r.quantiles))]
        return {"categories": r.categories, "status": "empty", "cells": cells}
    partial = False
    for _, b, days in r.quantiles:
        if b is None or days is None:
            partial = True
            cells += [_cell("suppressed", "value suppressed", _quantile_title(rules)),
                      _cell("–", "suppressed")]
        elif _beyond(job, b):
            last = job.edges[-1]
            title = (f"The curve is still above this level at the last bin edge ({last} "
                     "days): the quantile lies beyond it, and has no value.")
            cells += [_cell(_beyond_words(job), "value beyond", title),
                      _cell(job.bin_label(b), "bin")]
        else:
            cells += [_cell(f"{days:,}", "value", value=days), _cell(job.bin_label(b), "bin")]
    return {"categories": r.categories, "status": "partial" if partial else None,
            "cells": cells}


# ---- the reading guide ----------------------------------------------------------------------


def _edges_words(edges: tuple[int, ...]) -> str:
    shown = [str(e) for e in edges]
    if len(shown) > 14:
        shown = [*shown[:4], "…", *shown[-2:]]
    return ", ".join(shown)


def _reading(group_by: tuple[str, ...], job: DistributionJob, rules: DisclosureRules
             ) -> list[str]:
    k, last, column = rules.min_cell, job.edges[-1], job.column
    words = [
        f"Each group ({' × '.join(group_by)}) is the episodes of that combination, pooled "
        f"over all parties, and n is their number; the values are days of {column}. A "
        "quantile such as q25 is the day by which 25% of the episodes had ended. The median "
        "(q50) is the day by which half had ended: for time on treatment, half of the "
        "patients had stopped the treatment before that day and half stayed on it longer."
        + (" A box spans q25 to q75, the middle half of the episodes, with the median as a "
           "thick line." if _boxed(job) else ""),
    ]
    if job.censor:
        words.append(
            f"Episodes that had not ended at the data cut-off ({job.censor} = true) are "
            "censored: we know they lasted at least as long as observed, not when they "
            "ended. The Kaplan-Meier curve counts a censored episode as still going up to its "
            "last observed day and then leaves it out, instead of counting it as ended, which "
            "would make times look shorter than they are. The curve is the estimated share of "
            "episodes still going at each day; the quantiles are read from it (the median is "
            "where it falls to 0.5, the dashed line). A quantile the curve has not fallen to "
            f"by the last bin edge ({last} days) is “not reached”: it lies beyond {last} days "
            "and has no value.")
    else:
        words.append(
            "Every episode counts as ended at its measured value (the spec names no censoring "
            "column). The curve is the share of episodes still going at each day; the "
            "quantiles are read from it (the median is where it falls to 0.5, the dashed "
            f"line). A quantile shown as “≥ {last} days” lies at or beyond the last bin edge "
            "and has no value.")
    words.append(
        f"The parties only add up counts per public bin of days (edges {_edges_words(job.edges)}"
        "). A quantile's bin is exact; its value in days is interpolated linearly inside "
        "the bin, so it is an estimate within that bin (the table gives both). The curve is "
        "known at the bin edges only: its released points are dots, joined by steps.")
    words.append(
        f"Some values are missing on purpose. A group with fewer than {k} episodes"
        + (f", or with episodes from fewer than {rules.min_contributors} parties"
           if rules.min_contributors > 1 else "")
        + f" is suppressed whole. A curve point is withheld where fewer than {k} episodes are "
        f"still at risk at its edge, or where the step to it holds fewer than {k} ending "
        "episodes; a quantile is withheld where the points at the ends of its bin are. Late "
        "in the follow-up few episodes remain, so a curve may stop early (×) and a group may "
        "show its median but not its q75. No withheld value was ever revealed, to anyone. "
        "The boxes have no whiskers: the minimum and maximum are never released (each is one "
        "patient's value).")
    return words


# ---- charts -------------------------------------------------------------------------------


def _grid(count: int, *, stacked: bool) -> tuple[int, int]:
    """(rows, columns) of panels: up to three side by side, or (stacked) up to three in one
    column first."""
    side = 1 if count <= 3 else 2 if count <= 8 else 3
    cols = side if stacked else min(count, 3)
    return math.ceil(count / cols), cols


def _days_axis(ax: Axes, job: DistributionJob, right: float) -> None:
    from matplotlib.ticker import MaxNLocator

    first, last = job.edges[0], job.edges[-1]
    ax.set_xlim(first, right)
    # Day ticks up to the last edge only: past it nothing is known.
    ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(first, last)
    ax.set_xticks([t for t in ticks if first <= t <= last])
    ax.axvline(last, color="#bbbbbb", linewidth=0.8, linestyle=":")
    ax.set_xticks(list(job.edges), minor=True)  # the bin edges, as faint lines
    ax.grid(True, axis="x", which="minor", color="#eeeeee", linewidth=0.6)
    ax.tick_params(axis="x", which="minor", length=2)


def _legend(fig: Figure, handles: list[Any], columns: int, title: str | None = None) -> None:
    if handles:
        fig.legend(handles=handles, loc="outside lower center", frameon=False,
                   ncols=min(len(handles), columns), fontsize=8.5, title=title,
                   title_fontsize=8.5)


def _days_label(ax: Axes, job: DistributionJob, p: int, count: int, cols: int) -> None:
    """The days axis' name under the lowest panel of each column."""
    if p + cols >= count:
        ax.set_xlabel(f"{job.column} (days)", fontweight="bold", fontsize=9)


def _boxes(job: DistributionJob, rules: DisclosureRules,
           panels: list[tuple[str | None, list[Group]]]) -> dict[str, Any]:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows, cols = _grid(len(panels), stacked=True)
    sizes = [max(len(m) for _, m in panels[r * cols:(r + 1) * cols]) for r in range(rows)]
    heights = [0.32 * s + 0.75 for s in sizes]
    width = {1: 9.0, 2: 11.0, 3: 12.2}[cols]
    fig = Figure(figsize=(width, sum(heights) + 1.5), layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": heights})
    span = job.edges[-1] - job.edges[0]
    seen: dict[str, bool] = {}
    for p, (panel, members) in enumerate(panels):
        ax = axes[p // cols][p % cols]
        for y, g in enumerate(members):
            for what in _box(ax, y, g, job, span):
                seen[what] = True
        ax.set_yticks(range(len(members)))
        ax.set_yticklabels([_box_label(g) for g in members], fontsize=8.5)
        for tick, g in zip(ax.get_yticklabels(), members, strict=True):
            if g.result.n is None or g.result.n == 0:
                tick.set_color(SUPPRESSED_COLOUR)
                tick.set_fontstyle("italic")
        ax.set_ylim(sizes[p // cols] - 0.5, -0.5)
        ax.grid(False, axis="y")
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelbottom=True, labelsize=8)
        _days_axis(ax, job, job.edges[-1] + 0.3 * span)
        _days_label(ax, job, p, len(panels), cols)
        if panel is not None:
            ax.set_title(panel, loc="left", fontsize=10.5, fontweight="bold")
            if p % cols == 0:
                ax.set_ylabel(" / ".join(job.group_by[1:]), fontsize=9)
    for p in range(len(panels), rows * cols):
        axes[p // cols][p % cols].set_visible(False)
    kind = "Quartiles" if _boxed(job) else "Quantiles"
    title = f"{kind} of {job.column} per {' and '.join(job.group_by)}"
    fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold")
    handles: list[Any] = []
    if seen.get("box"):
        handles.append(Patch(facecolor="#cfd8e3", edgecolor=INK, label="q25 to q75"))
    if seen.get("median"):
        handles.append(Line2D([], [], color=INK, linewidth=2.4, label="median (q50)"))
    if seen.get("tick"):
        handles.append(Line2D([], [], color=INK, linewidth=1.0, label="a quantile without its box"))
    if seen.get("beyond"):
        handles.append(Line2D([], [], color=INK, marker=">", markersize=5, linewidth=1.0,
                              label=f"beyond the last edge ({job.edges[-1]} days): "
                              + _beyond_words(job)))
    if seen.get("withheld"):
        handles.append(Patch(facecolor="white", edgecolor=SUPPRESSED_COLOUR, hatch="////",
                             label="part withheld (suppressed)"))
    _legend(fig, handles, 3)
    note = ("No whiskers: the minimum and maximum are never released. A group greyed out is "
            "suppressed; where only some quantiles are released the box is drawn as far as "
            "they go, with a hatched, open end naming the withheld ones.")
    return {"title": title, "svg": _svg(fig, "boxes"), "note": note}


def _box_label(g: Group) -> str:
    n = g.result.n
    said = "suppressed" if n is None else "no episodes" if n == 0 else f"n = {n:,}"
    return f"{_label(g.series)}  ({said})"


def _box(ax: Axes, y: int, g: Group, job: DistributionJob, span: int) -> list[str]:
    """Draw group g's box at row y; returns what it drew (for the legend)."""
    from matplotlib.patches import FancyArrowPatch, Rectangle

    r, i = g.result, g.index
    colour = _colour(g.colour)
    first, last = job.edges[0], job.edges[-1]
    text: dict[str, Any] = {"fontsize": 8, "va": "center", "color": SUPPRESSED_COLOUR,
                            "style": "italic"}
    if r.n is None or r.n == 0:
        ax.text(first + 0.01 * span, y, "suppressed" if r.n is None else "no episodes",
                gid=f"suppressed-g{i}", **text)
        return []
    released: dict[int, tuple[float, bool]] = {}  # quantile index -> (x, beyond)
    withheld: list[str] = []
    for k, (q, b, days) in enumerate(r.quantiles):
        if b is None or days is None:
            withheld.append(quantile_name(q))
        else:
            released[k] = (float(last), True) if _beyond(job, b) else (float(days), False)
    drawn: list[str] = []
    h = 0.56
    low_k, mid_k, high_k = _find(job, BOX), _find(job, MEDIAN), _find(job, OTHER)
    ends = [x for x, _ in released.values()]
    reach = max(ends) if ends else float(first)
    box = None
    if low_k is not None and high_k is not None and low_k in released \
            and not released[low_k][1]:
        low = released[low_k][0]
        if high_k in released:
            box = (released[high_k][0], "box-open" if released[high_k][1] else "box")
        elif reach > low:  # q75 withheld: as far as the released quantiles go
            box = (reach, "box-partial")
    if box is not None:
        high, shape = box
        ax.add_patch(Rectangle((low, y - h / 2), high - low, h, facecolor=colour, alpha=0.3,
                               linewidth=0, gid=f"{shape}-g{i}"))
        edge: dict[str, Any] = {"color": colour, "linewidth": 1.2}
        ax.plot([high, low, low, high], [y - h / 2, y - h / 2, y + h / 2, y + h / 2], **edge)
        if shape == "box":
            ax.plot([high, high], [y - h / 2, y + h / 2], **edge)
        drawn.append("box")
    for k, (x, beyond) in released.items():
        if beyond:
            continue
        if k == mid_k:
            ax.plot([x, x], [y - h / 2, y + h / 2], color=INK, linewidth=2.4,
                    solid_capstyle="butt", gid=f"median-g{i}")
            drawn.append("median")
        elif k not in (low_k, high_k) or box is None:
            ax.plot([x, x], [y - h / 3, y + h / 3], color=INK, linewidth=1.0,
                    gid=f"tick-g{i}-{k}")
            ax.text(x, y - h / 2 - 0.04, quantile_name(r.quantiles[k][0]), fontsize=6.5,
                    ha="center", va="bottom", color=INK)
            drawn.append("tick")
    beyond_names = [quantile_name(r.quantiles[k][0]) for k, (_, b) in released.items() if b]
    if beyond_names:
        ax.add_patch(FancyArrowPatch((last, y), (last + 0.08 * span, y), arrowstyle="-|>",
                                     mutation_scale=9, color=INK, linewidth=1.0,
                                     gid=f"not-reached-g{i}"))
        ax.text(last + 0.09 * span, y, f"{', '.join(beyond_names)}: {_beyond_words(job)}",
                fontsize=7.5, va="center", color=INK, gid=f"not-reached-label-g{i}")
        drawn.append("beyond")
    if withheld:
        start = reach if released else float(first)
        ax.add_patch(Rectangle((start, y - h / 2), 0.04 * span, h, facecolor="white",
                               edgecolor=SUPPRESSED_COLOUR, hatch="////", linewidth=0.6,
                               gid=f"withheld-g{i}"))
        ax.text(start + 0.05 * span, y, f"{', '.join(withheld)} suppressed", **text)
        drawn.append("withheld")
    return drawn


def _curves(job: DistributionJob, rules: DisclosureRules,
            panels: list[tuple[str | None, list[Group]]]) -> dict[str, Any]:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    chunks: list[tuple[str | None, list[Group]]] = []
    for panel, members in panels:
        parts = [members[s:s + MAX_CURVES] for s in range(0, len(members), MAX_CURVES)]
        for n, part in enumerate(parts):
            label = panel if len(parts) == 1 else f"{panel or ''} ({n + 1} of {len(parts)})"
            chunks.append((label, part))
    rows, cols = _grid(len(chunks), stacked=False)
    fig = Figure(figsize=({1: 7.5, 2: 10.0, 3: 12.2}[cols], 3.0 * rows + 1.4),
                 layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    span = job.edges[-1] - job.edges[0]
    shared = panels[0][0] is not None  # series repeat across panels: one legend
    series: dict[int, str] = {}
    stopped = False
    for p, (label, members) in enumerate(chunks):
        ax = axes[p // cols][p % cols]
        ax.axhline(0.5, color="#555555", linestyle=(0, (4, 3)), linewidth=0.9,
                   gid=f"median-ref-{p}")
        missing: list[str] = []
        for g in members:
            drawn = _curve(ax, g, job)
            if drawn is None:
                said = "suppressed" if g.result.n is None else "no episodes"
                missing.append(f"{g.series}: {said}")
                continue
            series.setdefault(g.colour, g.series)
            stopped |= drawn
        if missing:
            ax.text(0.98, 0.96, "\n".join(missing), transform=ax.transAxes, ha="right",
                    va="top", fontsize=7.5, color=SUPPRESSED_COLOUR, style="italic",
                    gid=f"km-suppressed-{p}")
        ax.set_ylim(0, 1.04)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1])
        ax.tick_params(labelleft=True, labelbottom=True, labelsize=8)
        _days_axis(ax, job, job.edges[-1] + 0.03 * span)
        _days_label(ax, job, p, len(chunks), cols)
        if label is not None:
            ax.set_title(label, loc="left", fontsize=10.5, fontweight="bold")
        if not shared and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5, frameon=False, loc="lower left")
    for p in range(len(chunks), rows * cols):
        axes[p // cols][p % cols].set_visible(False)
    fig.supylabel("share still going", fontweight="bold", fontsize=10)
    title = (f"Kaplan-Meier curves of {job.column}" if job.censor
             else f"Share of episodes still going, {job.column}")
    fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold")
    handles: list[Any] = []
    if shared:
        handles += [Line2D([], [], color=_colour(c), marker="o", markersize=3.5,
                           linewidth=1.6, label=_label(name))
                    for c, name in sorted(series.items())]
    handles.append(Line2D([], [], color="#555555", linestyle=(0, (4, 3)), linewidth=0.9,
                          label="0.5: the median"))
    if stopped:
        handles.append(Line2D([], [], color=INK, marker="x", linestyle="none",
                              label=f"curve stops: fewer than {rules.min_cell} episodes "
                              "behind the next point"))
    _legend(fig, handles, 6, " / ".join(job.group_by[1:]) if shared else None)
    note = ("Only released points are drawn (dots), joined by steps from 1 at day "
            f"{job.edges[0]}. Where a curve stops before the last edge (×), its next point "
            f"would rest on fewer than {rules.min_cell} episodes and was not released.")
    return {"title": title, "svg": _svg(fig, "curves"), "note": note}


def _curve(ax: Axes, g: Group, job: DistributionJob) -> bool | None:
    """Draw group g's curve; None if there is none, else whether it stops early."""
    r, i = g.result, g.index
    if r.n is None or r.n == 0:
        return None
    xs, ys = [float(job.edges[0])], [1.0]
    for edge, survival in r.curve:
        if survival is None:  # released points are a prefix: the curve stops here
            break
        xs.append(float(edge))
        ys.append(survival)
    colour = _colour(g.colour)
    ax.step(xs, ys, where="post", color=colour, linewidth=1.6, label=_label(g.series),
            gid=f"km-line-g{i}")
    if len(xs) > 1:
        ax.plot(xs[1:], ys[1:], linestyle="none", marker="o", markersize=3.5, color=colour,
                gid=f"km-points-g{i}")
    if len(xs) - 1 < len(r.curve):
        ax.plot([xs[-1]], [ys[-1]], linestyle="none", marker="x", markersize=6.5,
                markeredgewidth=1.6, color=INK, gid=f"km-stop-g{i}")
        return True
    return False
