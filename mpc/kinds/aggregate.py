"""aggregate: a table of counts or sums over every party's rows, with disclosure control.

Local input: the party's table (connectors/table.py). Joint part: protocols/aggregate.py,
with noise drawn by every party (protocols/noise.py) when the spec asks for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpc.config.fields import Fields
from mpc.config.rules import COUNT, COUNT_DISTINCT, DisclosureRules, Measure
from mpc.config.scope import (
    check_filters,
    parse_categories,
    parse_input,
)
from mpc.kinds.base import InputSection, JobContext, JobKind, LocalInput

if TYPE_CHECKING:
    import torch

    from mpc.config.party import PartyConfig
    from mpc.config.spec import UseCaseSpec
    from mpc.connectors.table import LocalTable
    from mpc.engine.secret import MpcContext
    from mpc.protocols.aggregate import Released


@dataclass(frozen=True, kw_only=True)
class AggregateJob(InputSection):
    kind = "aggregate"


@dataclass(frozen=True)
class TableInput(LocalInput):
    table: LocalTable


class Aggregate(JobKind):
    name = AggregateJob.kind
    takes_noise = True
    takes_contributor_rule = True

    def parse(self, f: Fields, parties: tuple[str, ...]) -> AggregateJob:
        dataset, window, filters = parse_input(f)
        agg = f.table("aggregate")
        assert agg is not None
        group_by = agg.str_list("group_by")
        measure = Measure.parse(agg.str("measure", COUNT), agg, "measure")
        agg.done()
        if measure.column in group_by:
            raise agg.error("measure", f"column {measure.column!r} is also a group_by column")
        categories = parse_categories(f, group_by, "not a group_by column")
        check_filters(f, filters, group_by)
        return AggregateJob(group_by=group_by, categories=categories, dataset=dataset,
                            measure=measure, window=window, filters=filters)

    def local_input(self, spec: UseCaseSpec, config: PartyConfig) -> TableInput:
        from mpc.audit.digests import table_bytes
        from mpc.connectors import TableRequest, compute_local_table

        dataset = config.datasets[spec.dataset_of(config.name)]
        table = compute_local_table(dataset, TableRequest.from_spec(spec, config.name,
                                                                    dataset.bounds))
        return TableInput(f"{spec.cells} cells", table_bytes(table.values, table.rows),
                          table=table)

    def prepare(self, job: JobContext, local: LocalInput) -> tuple[TableInput,
                                                                   torch.Tensor | None]:
        """Every party draws the full noise (protocols/noise.py), before the session."""
        import torch

        from mpc.protocols.noise import noise_share, noise_source

        assert isinstance(local, TableInput)
        applied = job.spec.noise_under(job.rules)
        if applied is None:
            return local, None
        noise = noise_share(applied, len(job.spec.parties), job.spec.cells, noise_source())
        return local, torch.from_numpy(noise)

    def compute(self, mpc: MpcContext, job: JobContext, prepared: Any) -> Released:
        import torch

        from mpc.protocols.aggregate import aggregate

        local, noise = prepared
        return aggregate(mpc, torch.from_numpy(local.table.values),
                         torch.from_numpy(local.table.rows), job.rules, phase=job.phase,
                         noise=noise)

    def measure_words(self, spec: UseCaseSpec) -> str:
        measure = spec.measure
        if measure.kind == COUNT:
            return "number of records"
        if measure.kind == COUNT_DISTINCT:
            return f"number of distinct {measure.column}"
        return f"sum of {measure.column}"

    def terminal_title(self, spec: UseCaseSpec) -> str:
        return str(spec.measure)  # as the spec says it: count, sum:<column>, ...

    def rules_words(self, spec: UseCaseSpec, rules: DisclosureRules) -> str:
        n = rules.min_contributors
        have = f"{n} party has" if n == 1 else f"{n} parties have"
        return (f"A non-zero cell is released only if at least {have} records in it, of the "
                f"{len(spec.parties)} parties of the job (min_contributors = {n}).")


KIND = Aggregate()
