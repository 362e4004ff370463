"""distribution: quantiles and survival curves of a measure in days (treatment duration,
time to next treatment) per group, over every party's rows.

Local input: the party's histogram of the measure over the spec's public bins, events and
censored rows apart (connectors/histogram.py). Joint part: protocols/distribution.py, which
opens per group only n, each quantile's bin and interpolated value, and the curve at each
edge, each under the disclosure rules; never a histogram or a bin count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpc.config.fields import Fields
from mpc.config.rules import DisclosureRules
from mpc.config.scope import check_filters, parse_categories, parse_input
from mpc.kinds.base import InputSection, JobContext, JobKind, LocalInput, Opened

if TYPE_CHECKING:
    import numpy as np

    from mpc.config.party import PartyConfig
    from mpc.config.spec import UseCaseSpec
    from mpc.engine.secret import MpcContext
    from mpc.protocols.aggregate import Released
    from mpc.protocols.distribution import Layout

MAX_EDGES = 256
MAX_SPAN_DAYS = 100_000  # keeps the interpolation's long division short
MAX_QUANTILES = 9
QUANTILE_DIGITS = 4  # as protocols/distribution.QUANTILE_DENOMINATOR


@dataclass(frozen=True, kw_only=True)
class DistributionJob(InputSection):
    kind = "distribution"
    column: str  # the measure, in days
    censor: str | None  # the column that is true where the episode had not ended
    edges: tuple[int, ...]  # public bin edges, days
    quantiles: tuple[float, ...]

    def query(self) -> dict[str, Any]:
        return {"distribution": self.column, "censor": self.censor, "bins": list(self.edges),
                "quantiles": list(self.quantiles)}

    def layout(self) -> Layout:
        from mpc.protocols.distribution import QUANTILE_DENOMINATOR, Layout

        return Layout(self.edges, tuple(round(q * QUANTILE_DENOMINATOR)
                                        for q in self.quantiles))

    def bin_label(self, b: int) -> str:
        """Bin b as an interval of days: "[90, 120)", or "[730, inf)" for the last."""
        if b >= len(self.edges) - 1:
            return f"[{self.edges[-1]}, inf)"
        return f"[{self.edges[b]}, {self.edges[b + 1]})"


def quantile_name(q: float) -> str:
    """The result column of quantile q: q25, q50, q12.5."""
    return f"q{q * 100:g}"


@dataclass(frozen=True)
class HistogramInput(LocalInput):
    histogram: np.ndarray  # (groups, bins, 2) int64


@dataclass(frozen=True)
class GroupResult:
    """One group's release, decoded (None where suppressed)."""

    categories: tuple[str, ...]
    n: int | None
    quantiles: tuple[tuple[float, int | None, int | None], ...]  # (q, bin, days)
    curve: tuple[tuple[int, float | None], ...]  # (edge, survival) for e_1 .. e_m

    @property
    def suppressed(self) -> bool:
        return self.n is None


def decode(table: Opened) -> list[GroupResult]:
    """The release of a distribution job, per group in category order."""
    job = table.spec.job
    assert isinstance(job, DistributionJob)
    from mpc.protocols.distribution import SCALE

    layout = job.layout()
    q, m = len(job.quantiles), layout.finite
    out = []
    for g, combo in enumerate(table.spec.category_rows()):
        base = g * layout.per_group
        keep = table.keep[base: base + layout.per_group]
        value = table.value[base: base + layout.per_group]
        quantiles = tuple(
            (job.quantiles[i], int(value[1 + i]) if keep[1 + i] else None,
             int(value[1 + q + i]) if keep[1 + q + i] else None) for i in range(q))
        curve = tuple((job.edges[k + 1], round(int(value[1 + 2 * q + k]) / SCALE, 6)
                       if keep[1 + 2 * q + k] else None) for k in range(m))
        out.append(GroupResult(tuple(combo), int(value[0]) if keep[0] else None, quantiles,
                               curve))
    return out


class Distribution(JobKind):
    name = DistributionJob.kind
    takes_contributor_rule = True
    takes_rounding = False
    row_words = "groups"

    def parse(self, f: Fields, parties: tuple[str, ...]) -> DistributionJob:
        dataset, window, filters = parse_input(f)
        section = f.table("distribution")
        assert section is not None
        group_by = section.str_list("group_by")
        column = section.str("measure")
        censor = section.str("censor", None)
        edges = _edges(section)
        quantiles = _quantiles(section)
        section.done()
        for name, value in (("measure", column), ("censor", censor)):
            if value is not None and value in group_by:
                raise section.error(name, f"column {value!r} is also a group_by column")
        if censor is not None and censor == column:
            raise section.error("censor", "the censoring column is the measure column")
        categories = parse_categories(f, group_by, "not a group_by column")
        check_filters(f, filters, group_by)
        return DistributionJob(group_by=group_by, categories=categories, dataset=dataset,
                               window=window, filters=filters, column=column, censor=censor,
                               edges=edges, quantiles=quantiles)

    def released_size(self, spec: UseCaseSpec) -> int:
        job = spec.job
        assert isinstance(job, DistributionJob)
        return spec.cells * job.layout().per_group

    def counted_values(self, spec: UseCaseSpec) -> tuple[int, int]:
        job = spec.job
        assert isinstance(job, DistributionJob)
        return 0, job.layout().per_group  # each group's n; the rest are bins, days, curve

    def local_input(self, spec: UseCaseSpec, config: PartyConfig) -> HistogramInput:
        from mpc.audit.digests import table_bytes
        from mpc.connectors import TableRequest
        from mpc.connectors.histogram import HistogramRequest, compute_local_histogram

        job = spec.job
        assert isinstance(job, DistributionJob)
        dataset = config.datasets[spec.dataset_of(config.name)]
        request = HistogramRequest.of(TableRequest.from_spec(spec, config.name,
                                                             dataset.bounds),
                                      job.column, job.edges, job.censor)
        histogram = compute_local_histogram(dataset, request)
        flat = histogram.reshape(-1)
        return HistogramInput(f"{spec.cells} groups x {len(job.edges)} bins",
                              table_bytes(flat, flat), histogram=histogram)

    def compute(self, mpc: MpcContext, job: JobContext, prepared: Any) -> Released:
        import torch

        from mpc.protocols.distribution import distribution

        assert isinstance(prepared, HistogramInput)
        section = job.spec.job
        assert isinstance(section, DistributionJob)
        return distribution(mpc, torch.from_numpy(prepared.histogram), section.layout(),
                            job.rules, censored=section.censor is not None, phase=job.phase)

    def result_files(self, table: Opened) -> dict[str, tuple[list[str],
                                                                   list[dict[str, Any]]]]:
        job = table.spec.job
        assert isinstance(job, DistributionJob)
        group_by = list(table.spec.group_by)
        names = [quantile_name(q) for q in job.quantiles]
        columns = [*group_by, "n", *names, *(f"{name}_bin" for name in names), "suppressed"]
        rows, points = [], []
        for group in decode(table):
            row: dict[str, Any] = dict(zip(group_by, group.categories, strict=True))
            row["n"] = group.n
            for name, (_, b, days) in zip(names, group.quantiles, strict=True):
                beyond = b is not None and b >= len(job.edges) - 1
                row[name] = None if beyond else days  # beyond the last edge: no value
                row[f"{name}_bin"] = None if b is None else job.bin_label(b)
            row["suppressed"] = group.suppressed
            rows.append(row)
            for edge, survival in group.curve:
                points.append({**dict(zip(group_by, group.categories, strict=True)),
                               "days": edge, "survival": survival,
                               "suppressed": survival is None})
        return {"result.csv": (columns, rows),
                "curve.csv": ([*group_by, "days", "survival", "suppressed"], points)}

    def measure_words(self, spec: UseCaseSpec) -> str:
        job = spec.job
        assert isinstance(job, DistributionJob)
        quantiles = ", ".join(quantile_name(q) for q in job.quantiles)
        curve = "Kaplan-Meier curve" if job.censor else "share still going"
        return f"{job.column}: n, {quantiles} and the {curve} at each bin edge"

    def terminal_title(self, spec: UseCaseSpec) -> str:
        job = spec.job
        assert isinstance(job, DistributionJob)
        return f"{job.column} (days)"

    def rules_words(self, spec: UseCaseSpec, rules: DisclosureRules) -> str:
        n = rules.min_contributors
        have = f"{n} party has" if n == 1 else f"{n} parties have"
        return (f"A group's n is released only if it has at least {rules.min_cell} "
                f"episodes and at least {have} episodes in it; a curve point only while at "
                f"least {rules.min_cell} episodes are at risk at its edge and the step to it "
                f"holds at least {rules.min_cell} events (or none); a quantile only where "
                f"the curve points at both ends of its bin are released. Histograms and bin "
                f"counts are never opened.")


def _edges(section: Fields) -> tuple[int, ...]:
    raw = section.raw("bins")
    if not (isinstance(raw, list) and all(isinstance(e, int) and not isinstance(e, bool)
                                          for e in raw)):
        raise section.error("bins", "expected a list of whole days, e.g. [0, 30, 60, 90]")
    if not 2 <= len(raw) <= MAX_EDGES:
        raise section.error("bins", f"expected 2 to {MAX_EDGES} edges, got {len(raw)}")
    if any(b <= a for a, b in zip(raw, raw[1:], strict=False)):
        raise section.error("bins", "edges must be strictly increasing")
    if raw[0] < 0 or raw[-1] - raw[0] > MAX_SPAN_DAYS:
        raise section.error("bins", f"edges must lie in 0 .. {MAX_SPAN_DAYS} days")
    return tuple(raw)


def _quantiles(section: Fields) -> tuple[float, ...]:
    raw = section.raw("quantiles", [0.25, 0.5, 0.75])
    if not (isinstance(raw, list) and raw and all(isinstance(q, float | int) and
                                                  not isinstance(q, bool) for q in raw)):
        raise section.error("quantiles", "expected a list of fractions, e.g. [0.25, 0.5]")
    if len(raw) > MAX_QUANTILES:
        raise section.error("quantiles", f"at most {MAX_QUANTILES} quantiles")
    for q in raw:
        if not 0 < q < 1 or abs(round(q, QUANTILE_DIGITS) - q) > 1e-12:
            raise section.error("quantiles", f"{q!r} is not a fraction strictly between 0 "
                                             f"and 1 with at most {QUANTILE_DIGITS} decimals")
    if any(b <= a for a, b in zip(raw, raw[1:], strict=False)):
        raise section.error("quantiles", "quantiles must be strictly increasing")
    return tuple(float(q) for q in raw)


KIND = Distribution()
