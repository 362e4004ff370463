"""report.html: one self-contained page for a released table (header, charts, table, spec).

The page loads nothing from anywhere: charts are inline SVG with text drawn as paths, the CSS
is inline, there is no script. It shows only what the release already made public.
"""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
from markupsafe import Markup

from mpc.config.rules import DISCRETE_LAPLACE
from mpc.config.spec import DisclosureRules, UseCaseSpec
from mpc.kinds import kind_of
from mpc.kinds.distribution import DistributionJob
from mpc.report.table import ReleasedTable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

# Okabe-Ito: distinguishable with the common colour-vision deficiencies; yellow last (faint).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
SUPPRESSED_COLOUR = "#666666"
# Past these a chart is unreadable; the table below it and result.csv still hold every cell.
MAX_CHART_BARS = 600  # bars in one chart
MAX_STACKS = 12  # segments of a stacked bar, or bars side by side: one colour each
MAX_CHARTS = 12  # stacked charts, one per value of the first column
MAX_CHART_CELLS = 1200  # cells drawn on one page: drawing is most of a report's time and size
# Past this many rows the released table is collapsed (the page stays quick to open).
COLLAPSE_ROWS = 500


@dataclass(frozen=True)
class Chart:
    title: str
    svg: Markup


def write_report(table: ReleasedTable, folder: Path, *, job_seconds: float | None = None) -> Path:
    """Write folder/report.html for a released table; returns its path."""
    spec, rules, job = table.spec, table.rules, table.spec.job
    # A distribution release is per group (n, quantiles, a curve), not one value per cell.
    grouped: dict[str, Any] | None = None
    basics: list[str] | None = None
    if isinstance(job, DistributionJob):
        from mpc.report.distribution import distribution_context, rules_basics

        grouped, basics = distribution_context(table), rules_basics(rules)
    keep = np.asarray(table.cell_keep, dtype=bool)
    released = np.where(keep, np.asarray(table.cell_value, dtype=np.int64), 0)
    charts, chart_note = ([], None) if grouped else _charts(table, keep, released)
    scalar = table.scalar()  # None: the kind has no scalar
    context: dict[str, Any] = {
        "spec": spec,
        "job_id": table.job_id,
        "released_at": table.released_at,
        "job_time": None if job_seconds is None else _duration(job_seconds),
        "measure": job.column if isinstance(job, DistributionJob) else str(spec.measure),
        "measure_words": measure_words(spec),
        "rules": rules,
        "rules_words": (_noise_words(table) if spec.noise is not None else
                        _rules_words(rules, spec.disclosure, spec, basics)),
        "suppressed_title": _suppressed_title(rules),
        "row_words": kind_of(job).row_words,
        "cells": len(keep) if grouped is None else grouped["groups"],
        "suppressed_cells": (int((~keep).sum()) if grouped is None
                             else grouped["suppressed"]),
        "scalar": (None if scalar is None else
                   {"name": kind_of(job).scalar_label, **scalar}),
        "rows": [] if grouped else [
            {"cells": combo, "suppressed": not k, "value": int(v),
             "shown": f"{int(v):,}" + (f" ± {table.interval}" if table.interval else "")}
            for combo, k, v in zip(spec.category_rows(), keep, released, strict=True)
        ],
        "margins": {} if grouped else _margins(table, keep, released),
        "collapsed": len(keep) > COLLAPSE_ROWS,
        "charts": charts,
        "chart_note": chart_note,
        "grouped": grouped,
        "spec_text": spec.text.decode("utf-8", errors="replace"),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "report.html"
    path.write_text(_template().render(context), encoding="utf-8")
    return path


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mpc.report", "templates"),
        autoescape=True,  # category names and spec text come from files: never raw HTML
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def measure_words(spec: UseCaseSpec) -> str:
    """What a cell counts, in words."""
    return kind_of(spec.job).measure_words(spec)


def _noise_words(table: ReleasedTable) -> list[str]:
    """The differential privacy guarantee, for a data protection officer."""
    noise, rules = table.spec.noise_under(table.rules), table.rules
    assert noise is not None
    name = ("discrete Laplace" if noise.mechanism == DISCRETE_LAPLACE
            else "discrete Gaussian")
    guarantee = (f"epsilon = {noise.epsilon:g}" if noise.mechanism == DISCRETE_LAPLACE
                 else f"epsilon = {noise.epsilon:g}, delta = {noise.delta:g}")
    return [
        f"Differential privacy ({name} noise, {guarantee}; one person's rows at one party "
        f"change the table by at most {noise.sensitivity}, the parties' contribution bounds): "
        "every value is the true value plus random noise, "
        "drawn inside the computation from all parties' shares, so no party and no recipient "
        "knows the noise, and whether any one person's records were in the data changes the "
        f"chance of any release by at most a factor e^{noise.epsilon:g}.",
        f"The true value lies within ± {table.interval} of the released value with 95% "
        "probability (shown next to each value).",
        f"Cells whose noisy value is below {rules.min_cell} are suppressed; this decision "
        "looks only at the noisy value, so it costs no privacy."
        + (f" Values are rounded to multiples of {table.spec.round_to}."
           if table.spec.round_to > 1 else ""),
    ]


def _rules_words(rules: DisclosureRules, asked: DisclosureRules, spec: UseCaseSpec,
                 basics: list[str] | None = None) -> list[str]:
    """`basics`: the kind's own first lines (min_cell and suppress_zero in its words)."""
    words = list(basics) if basics is not None else [
        f"Non-zero cells below {rules.min_cell} are suppressed (min_cell = {rules.min_cell}).",
        "Zero cells are suppressed too (suppress_zero = true)." if rules.suppress_zero else
        "Zero cells are released as 0 (suppress_zero = false): a 0 is a true zero, "
        "not a hidden value.",
    ]
    words.append(kind_of(spec.job).rules_words(spec, rules))
    if rules != asked:
        # Parties' floors can only make the rules stricter; say so, or the header would not
        # match the spec printed at the bottom of the page.
        words.append(
            f"These are the spec's rules raised to the parties' own floors: the spec asked for "
            f"min_cell = {asked.min_cell}, min_contributors = {asked.min_contributors}, "
            f"suppress_zero = {str(asked.suppress_zero).lower()}."
        )
    return words


def _suppressed_title(rules: DisclosureRules) -> str:
    reasons = [f"its value was non-zero and below {rules.min_cell}"]
    if rules.min_contributors > 1:
        reasons.append(f"fewer than {rules.min_contributors} parties had records in it")
    if rules.suppress_zero:
        reasons.append("it was zero")
    return ("Suppressed by the disclosure rules: " + ", or ".join(reasons) + ". Neither the "
            "value nor which rule applied was ever revealed, to anyone.")


def _margins(table: ReleasedTable, keep: np.ndarray, released: np.ndarray
             ) -> dict[str, Any]:
    """Totals over released cells only: a suppressed value was never opened, so it cannot count
    (and must not, even if a caller passes one)."""
    spec = table.spec
    first, values = spec.categories[0]
    rows = len(values)
    keep2 = keep.reshape(rows, -1)
    value2 = released.reshape(rows, -1)
    groups = [
        {"label": label, "total": f"{int(value2[i].sum()):,}", "value": int(value2[i].sum()),
         "released": int(keep2[i].sum()), "suppressed": int((~keep2[i]).sum())}
        for i, label in enumerate(values)
    ] if len(spec.group_by) > 1 else []  # for one column the per-value totals are the cells
    grand = int(released.sum())
    return {"column": first, "groups": groups, "grand": grand, "grand_shown": f"{grand:,}",
            "released": int(keep.sum()), "suppressed": int((~keep).sum())}


def _charts(table: ReleasedTable, keep: np.ndarray, released: np.ndarray
            ) -> tuple[list[Chart], str | None]:
    """The charts that are readable, and a note on what is left out. Drawing is most of a
    report's time, so a chart nobody could read is not drawn at all."""
    spec = table.spec
    shape = spec.shape
    names = spec.group_by
    labels = [values for _, values in spec.categories]
    y_label = measure_words(spec)
    unreadable = _unreadable(shape)
    if unreadable:
        return [], (f"The table has too many categories to chart ({unreadable}); every cell "
                    "is in the table below and in result.csv.")
    # Imported here: matplotlib costs about a second at import and only reports need it.
    from matplotlib import rc_context

    with rc_context(_STYLE):
        if len(shape) >= 3:
            # One stacked chart per value of the first column; every further column is one
            # stack segment (joined by " / " when there are more than three columns).
            stacks = [" / ".join(c) for c in itertools.product(*labels[2:])]
            keep3 = keep.reshape(shape[0], shape[1], len(stacks))
            value3 = released.reshape(shape[0], shape[1], len(stacks))
            bottom, top = _stack_range(value3)
            drawn = min(MAX_CHARTS, MAX_CHART_CELLS // (shape[1] * len(stacks)))
            charts = []
            for i, label in enumerate(labels[0][:drawn]):
                title = f"{names[0]}: {label}"
                fig, ax = _figure(shape[1])
                hidden = _stacked(ax, labels[1], stacks, keep3[i], value3[i], (bottom, top))
                _decorate(ax, title, names[1], y_label, " / ".join(names[2:]), labels[1],
                          hidden)
                charts.append(Chart(title, _svg(fig, f"chart{i + 1}")))
            note = (None if shape[0] <= drawn else
                    f"The charts show the first {drawn} of the {shape[0]} values of "
                    f"{names[0]}: more would make the page slow to open. Every cell is in "
                    "the table below and in result.csv.")
            return charts, note
        if len(shape) == 2:
            title = f"{spec.name}: {names[0]} by {names[1]}"
            series: tuple[str, ...] | list[str]
            series, series_title = labels[0], names[0]
            keep2, value2 = keep.reshape(shape), released.reshape(shape)
        else:
            title = f"{spec.name}: by {names[0]}"
            series, series_title = [y_label], None
            keep2, value2 = keep.reshape(1, -1), released.reshape(1, -1)
        fig, ax = _figure(keep2.size)
        hidden = _grouped(ax, labels[-1], series, keep2, value2)
        _decorate(ax, title, names[-1], y_label, series_title, labels[-1], hidden)
        return [Chart(title, _svg(fig, "chart1"))], None


def _unreadable(shape: tuple[int, ...]) -> str | None:
    """Why a table of this shape cannot be charted readably, or None."""
    if len(shape) >= 3:
        stacks = int(np.prod(shape[2:]))
        if stacks > MAX_STACKS:
            return f"{stacks} segments per bar"
        if shape[1] > MAX_CHART_BARS // MAX_STACKS:
            return f"{shape[1]} bars per chart"
        if shape[1] * stacks > MAX_CHART_CELLS:
            return f"{shape[1] * stacks} segments per chart"
        return None
    bars = int(np.prod(shape))
    if bars > MAX_CHART_BARS:
        return f"{bars} bars"
    if len(shape) == 2 and shape[0] > MAX_STACKS:
        return f"{shape[0]} bars in each group"
    return None


_STYLE: dict[RcKeyType, Any] = {
    "svg.fonttype": "path",  # glyphs as paths: the page needs no font from anywhere
    "svg.hashsalt": "mpc-health",  # stable ids: the same release gives the same file
    "text.parse_math": False,  # a category such as "$5" is text, not mathtext
    "font.size": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#dddddd",
    "axes.axisbelow": True,
    "hatch.linewidth": 1.0,
}


def _colour(i: int) -> str | tuple[float, float, float, float]:
    if i < len(PALETTE):
        return PALETTE[i]
    from matplotlib import colormaps

    return colormaps["tab20"](i % 20)


def _label(text: str) -> str:
    # matplotlib leaves labels that start with "_" out of legends
    return " " + text if text.startswith("_") else text


def _figure(bars: int) -> tuple[Figure, Axes]:
    # Figure directly, not pyplot: no global state and never a GUI backend.
    from matplotlib.figure import Figure

    width = min(14.0, max(6.5, 3.0 + 0.45 * bars))
    fig = Figure(figsize=(width, 4.2), layout="constrained")
    return fig, fig.add_subplot()


def _stack_range(values: np.ndarray) -> tuple[float, float]:
    """(lowest, highest) stacked total of released cells, shared by every chart of a page so
    bars compare across charts."""
    top = float(np.clip(values, 0, None).sum(axis=-1).max(initial=0))
    bottom = float(np.clip(values, None, 0).sum(axis=-1).min(initial=0))
    return bottom, top


def _marker_height(bottom: float, top: float) -> float:
    return 0.05 * (top - bottom) if top > bottom else 1.0


def _suppressed_handle() -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor="white", edgecolor=SUPPRESSED_COLOUR, hatch="////",
                 label="suppressed (value withheld)")


def _stacked(ax: Axes, x_labels: tuple[str, ...] | list[str], stacks: list[str],
             keep: np.ndarray, value: np.ndarray, limits: tuple[float, float]) -> bool:
    """Bars at x_labels, one segment per stack; keep and value are (x, stack). Returns
    whether any cell is suppressed."""
    x = np.arange(len(x_labels))
    up = np.zeros(len(x))
    down = np.zeros(len(x))
    for s, name in enumerate(stacks):
        v = value[:, s].astype(float)  # suppressed cells are 0 here: they add nothing
        base = np.where(v >= 0, up, down)
        ax.bar(x, v, 0.7, bottom=base, color=_colour(s), label=_label(name),
               edgecolor="white", linewidth=0.6)
        up += np.clip(v, 0, None)
        down += np.clip(v, None, 0)
    bottom, top = limits
    h = _marker_height(bottom, top)
    hidden = ~keep
    for i in np.flatnonzero(hidden.any(axis=1)):
        # A hatched block on top of the bar and the hidden segments' names above it.
        ax.bar(x[i], h, 0.7, bottom=up[i], facecolor="white", edgecolor=SUPPRESSED_COLOUR,
               hatch="////", linewidth=0.8)
        names = [stacks[s] for s in np.flatnonzero(hidden[i])]
        text = ", ".join(names)
        if len(names) > 3 or len(text) > 24:
            text = f"{len(names)} cells"
        ax.annotate(f"suppressed:\n{text}", (x[i], up[i] + h), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8.5,
                    color=SUPPRESSED_COLOUR, style="italic")
    ax.set_ylim(min(bottom, 0) * 1.1, (top + h) * 1.15 if top > 0 else h * 4)
    return bool(hidden.any())


def _grouped(ax: Axes, x_labels: tuple[str, ...] | list[str], series: tuple[str, ...] | list[str],
             keep: np.ndarray, value: np.ndarray) -> bool:
    """Side-by-side bars, one series per row of keep and value (series, x). Returns whether
    any cell is suppressed."""
    x = np.arange(len(x_labels))
    n = len(series)
    width = 0.8 / n
    top = float(max(value.max(initial=0), 0))
    bottom = float(min(value.min(initial=0), 0))
    h = _marker_height(bottom, top)
    # Upright labels only where a bar is wide enough to hold the word.
    rotation = 0 if n == 1 and len(x) <= 8 else 90
    for s, name in enumerate(series):
        offset = (s - (n - 1) / 2) * width
        colour = _colour(s)
        ax.bar(x + offset, value[s].astype(float), width, color=colour, label=_label(name))
        for i in np.flatnonzero(~keep[s]):
            # Hatched in the series' colour so it is clear whose bar is missing.
            ax.bar(x[i] + offset, h, width, facecolor="white", edgecolor=colour,
                   hatch="////", linewidth=0.8)
            ax.annotate("suppressed", (x[i] + offset, h), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom",
                        rotation=rotation, fontsize=8, color=SUPPRESSED_COLOUR,
                        style="italic")
    ax.set_ylim(bottom * 1.1, (top if top > 0 else 4 * h) * 1.1 + h)
    return bool((~keep).any())


def _decorate(ax: Axes, title: str, x_name: str, y_label: str, legend_title: str | None,
              x_labels: tuple[str, ...] | list[str], suppressed: bool) -> None:
    ax.set_title(title, loc="left", fontsize=12, fontweight="bold")
    ax.set_xlabel(x_name, labelpad=6, fontweight="bold")
    ax.set_ylabel(y_label, fontweight="bold")
    ax.set_xticks(np.arange(len(x_labels)))
    crowded = len(x_labels) > 8 or max((len(s) for s in x_labels), default=0) > 12
    ax.set_xticklabels(list(x_labels), rotation=30 if crowded else 0,
                       ha="right" if crowded else "center")
    ax.axhline(0, color="#444444", linewidth=0.8)
    handles, labels = ax.get_legend_handles_labels()
    if legend_title is None:  # one series: its name is already the y axis label
        handles, labels = [], []
    if suppressed:
        marker = _suppressed_handle()
        handles.append(marker)
        labels.append(marker.get_label())
    if handles:
        # Below the plot, in a row: beside it would take width from the bars.
        ax.figure.legend(handles, labels, title=legend_title, loc="outside lower center",
                         ncols=min(len(handles), 6), frameon=False)


_ID = re.compile(r'(\sid=")([^"]+")')
_REF = re.compile(r'((?:xlink:)?href="#|url\(#)')


def _svg(fig: Figure, prefix: str) -> Markup:
    """The figure as inline SVG; ids prefixed so that several charts can share one page."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # the XML prolog and DOCTYPE are not allowed inline
    text = _ID.sub(rf"\g<1>{prefix}-\g<2>", text)
    text = _REF.sub(rf"\g<1>{prefix}-", text)
    return Markup(text)  # trusted: matplotlib escapes every text it writes into the SVG
