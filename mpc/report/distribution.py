"""report.html's parts for a distribution release: box plots per group from the released
quantiles, the curves with their released points, and the table of result.csv.

Only released values are drawn. There are no whiskers: minimum and maximum are never
released. A quantile beyond the last edge is drawn as an open end at that edge.
"""

from __future__ import annotations

from typing import Any

from mpc.kinds.distribution import DistributionJob, GroupResult, decode, quantile_name
from mpc.report.html import _STYLE, PALETTE, SUPPRESSED_COLOUR, Chart, _colour, _svg
from mpc.report.table import ReleasedTable

MAX_CHART_GROUPS = 60  # past this, boxes and curves are unreadable: the table has them all


def distribution_context(table: ReleasedTable) -> dict[str, Any]:
    """The template's `distribution` block: charts, a note, and the table's rows."""
    job = table.spec.job
    assert isinstance(job, DistributionJob)
    groups = decode(table)
    names = [quantile_name(q) for q in job.quantiles]
    rows = []
    for g in groups:
        cells = []
        for _, b, days in g.quantiles:
            if b is None:
                cells.append({"shown": "suppressed", "suppressed": True})
            elif b >= len(job.edges) - 1:
                cells.append({"shown": f"not reached by {job.edges[-1]} days"
                              if job.censor else f"{job.edges[-1]} days or more",
                              "suppressed": False})
            else:
                cells.append({"shown": f"{days} ({job.bin_label(b)})", "suppressed": False})
        rows.append({"cells": g.categories, "suppressed": g.suppressed,
                     "n": "suppressed" if g.n is None else f"{g.n:,}", "quantiles": cells})
    charts: list[Chart] = []
    note = None
    if len(groups) > MAX_CHART_GROUPS:
        note = (f"{len(groups)} groups are too many to chart; every group is in the table "
                "below and in result.csv and curve.csv.")
    else:
        charts = [_boxes(table, job, groups), _curves(table, job, groups)]
    return {"charts": charts, "note": note, "quantile_names": names, "rows": rows,
            "curve_words": "Kaplan-Meier estimate of the share still on it" if job.censor
            else "share of episodes lasting at least this long"}


def _label(g: GroupResult) -> str:
    return " / ".join(g.categories)


def _boxes(table: ReleasedTable, job: DistributionJob, groups: list[GroupResult]) -> Chart:
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    q = dict(enumerate(job.quantiles))
    last = job.edges[-1]
    first = list(table.spec.categories[0][1])
    with rc_context(_STYLE):
        fig = Figure(figsize=(min(14.0, max(6.5, 2.5 + 0.55 * len(groups))), 4.6),
                     layout="constrained")
        ax = fig.add_subplot()
        for x, g in enumerate(groups):
            values: dict[float, int] = {
                q[i]: (last if b >= len(job.edges) - 1 else days)
                for i, (_, b, days) in enumerate(g.quantiles)
                if b is not None and days is not None}  # released: both or neither
            open_end = {q[i] for i, (_, b, _d) in enumerate(g.quantiles)
                        if b is not None and b >= len(job.edges) - 1}
            colour = _colour(first.index(g.categories[0]))  # one colour per product
            if not values:
                ax.annotate("suppressed", (x, 0), rotation=90, ha="center", va="bottom",
                            fontsize=8, color=SUPPRESSED_COLOUR, style="italic")
                continue
            low, high = values.get(0.25), values.get(0.75)
            if low is not None and high is not None:
                ax.bar(x, high - low, 0.6, bottom=low, color=colour, alpha=0.35,
                       edgecolor=colour)
            for qq, days in values.items():
                ax.hlines(days, x - 0.3, x + 0.3, colors=colour,
                          linestyles="solid" if qq == 0.5 else "dotted",
                          linewidth=2.2 if qq == 0.5 else 1.2)
                if qq in open_end:
                    ax.annotate("not reached" if job.censor else f">= {last}", (x, days),
                                xytext=(0, 4), textcoords="offset points", ha="center",
                                fontsize=7.5, color=SUPPRESSED_COLOUR)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([_label(g) for g in groups], rotation=30, ha="right")
        ax.set_ylabel(f"{job.column} (days)", fontweight="bold")
        title = f"{job.column}: quartiles per {' and '.join(job.group_by)}"
        ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
        return Chart(title + " (box: q25 to q75, thick line: median; no whiskers: minimum "
                     "and maximum are never released)", _svg(fig, "boxes"))


def _curves(table: ReleasedTable, job: DistributionJob, groups: list[GroupResult]) -> Chart:
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    with rc_context(_STYLE):
        fig = Figure(figsize=(9.0, 4.8), layout="constrained")
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            shown = [(edge, s) for edge, s in g.curve if s is not None]
            if g.suppressed or not shown:
                continue
            xs = [job.edges[0]] + [edge for edge, _ in shown]
            ys = [1.0] + [s for _, s in shown]
            colour = PALETTE[i % len(PALETTE)] if i < len(PALETTE) else _colour(i)
            ax.step(xs, ys, where="post", color=colour, label=_label(g), linewidth=1.4)
            ax.plot(xs[1:], ys[1:], "o", color=colour, markersize=3)
            if len(shown) < len(g.curve):  # the rest is not released: mark where it stops
                ax.plot([xs[-1]], [ys[-1]], "x", color=SUPPRESSED_COLOUR, markersize=6)
        ax.axhline(0.5, color="#888888", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel(f"{job.column} (days)", fontweight="bold")
        ax.set_ylabel("share still going", fontweight="bold")
        title = ("Kaplan-Meier curves" if job.censor else "Share of episodes still going")
        ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
        if groups:
            fig.legend(loc="outside right upper", fontsize=8, frameon=False)
        return Chart(title + " (points: released; x: the curve stops, fewer than min_cell at "
                     "risk or in the step; dashed: median)", _svg(fig, "curves"))
