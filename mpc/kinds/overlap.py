"""overlap: how many persons are seen at 1, 2, ..., N parties, and how many are distinct.

Local input: the distinct persons in scope (connectors/persons.py). Joint part: every list
goes once around the ring of parties, blinded at each (protocols/linkage.py); the dealer
counts the Venn diagram of the padded lists and shares it back (DealerPart below); inside
MPC the parties take out their dummies and apply the rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mpc.config.fields import Fields
from mpc.config.rules import DisclosureRules
from mpc.config.scope import (
    MAX_PAD,
    check_filters,
    parse_input,
    parse_pad_to,
)
from mpc.kinds.base import (
    DealerPart,
    InputSection,
    JobContext,
    JobKind,
    LocalInput,
    PersonList,
)
from mpc.kinds.persons import read_persons

if TYPE_CHECKING:
    import torch

    from mpc.config.party import PartyConfig
    from mpc.config.spec import UseCaseSpec
    from mpc.engine.secret import MpcContext
    from mpc.protocols.aggregate import Released

PARTIES_SEEN = "parties_seen"  # the histogram's one column
ORIGIN = "origin:"  # list "origin:r" is rank r's list, blinded by every party


@dataclass(frozen=True, kw_only=True)
class OverlapJob(InputSection):
    kind = "overlap"
    key: str
    pad_to: int

    def persons(self) -> PersonList:
        return PersonList(self.key, self.pad_to)

    def query(self) -> dict[str, Any]:
        return {"overlap": {"key": self.key}}


@dataclass(frozen=True)
class IdsInput(LocalInput):
    ids: list[str]


class _Histogram(DealerPart):
    """The dealer counts in how many lists each point occurs and shares the counts."""

    def wanted(self, parties: int) -> set[str]:
        return {f"{ORIGIN}{r}" for r in range(parties)}

    def hands_over(self, parties: int, rank: int, name: str) -> bool:
        # Rank r's list reaches the dealer from its ring predecessor, the last to blind it.
        return name == f"{ORIGIN}{(rank + 1) % parties}"

    def params_problem(self, parties: int, widths: tuple[int, ...], pad_to: int) -> str | None:
        return None if 0 < pad_to <= MAX_PAD else "malformed overlap parameters"

    def outcome(self, job_id: str, seeds: list[bytes], lists: dict[str, bytes],
                widths: tuple[int, ...], pad_to: int) -> list[list[torch.Tensor]]:
        from mpc.protocols.linking import split_into_shares, venn_histogram

        n = len(seeds)
        counts = venn_histogram([lists[f"{ORIGIN}{r}"] for r in range(n)])
        return [[share] for share in split_into_shares(counts, n)]


class Overlap(JobKind):
    name = OverlapJob.kind
    scalar = "distinct"
    scalar_label = "Distinct persons"
    dealer = _Histogram(parts=("counts",))

    def parse(self, f: Fields, parties: tuple[str, ...]) -> OverlapJob:
        dataset, window, filters = parse_input(f)
        table = f.table("overlap")
        assert table is not None
        key, pad_to = table.str("key"), parse_pad_to(table)
        table.done()
        group_by = (PARTIES_SEEN,)
        check_filters(f, filters, group_by)
        return OverlapJob(group_by=group_by,
                          categories=((PARTIES_SEEN,
                                       tuple(str(k) for k in range(1, len(parties) + 1))),),
                          dataset=dataset, key=key, pad_to=pad_to, window=window,
                          filters=filters)

    def local_input(self, spec: UseCaseSpec, config: PartyConfig) -> IdsInput:
        ids, _, committed = read_persons(spec, config, (), None, distinct_only=True)
        return IdsInput("one row per person", committed, ids=ids)

    def prepare(self, job: JobContext, local: LocalInput) -> Any:
        from mpc.protocols.linkage import overlap_shares

        section = job.spec.job
        assert isinstance(local, IdsInput) and isinstance(section, OverlapJob)
        return overlap_shares(job.link, local.ids, section.pad_to, job.phase)

    def compute(self, mpc: MpcContext, job: JobContext, prepared: Any) -> Released:
        from mpc.protocols.linkage import overlap_counts

        counts, dummies = prepared
        return overlap_counts(mpc, counts, dummies, job.rules, job.phase)

    def measure_words(self, spec: UseCaseSpec) -> str:
        return "number of persons"

    def rules_words(self, spec: UseCaseSpec, rules: DisclosureRules) -> str:
        return ("Each person counts once however many records they have; a row counts the "
                "persons seen at exactly that many parties. The number of distinct persons is "
                "released under the same rules.")


KIND = Overlap()
