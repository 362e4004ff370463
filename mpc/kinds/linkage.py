"""linkage: a cross table of persons found at both of two parties, by attributes of each.

Local input: one row per person with its attribute cell (connectors/persons.py). Joint part:
protocols/linkage.py blinds and pads both lists, the dealer matches them (DealerPart below,
protocols/linking.py), and the cross table of the matched rows is one Beaver product."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mpc.config.fields import Fields
from mpc.config.rules import DisclosureRules
from mpc.config.scope import (
    MAX_PAD,
    Filters,
    Reduce,
    Window,
    parse_categories,
    parse_filters,
    parse_pad_to,
    parse_reduce,
    parse_window,
)
from mpc.kinds.base import DealerPart, JobContext, JobKind, LocalInput, PersonList, Section
from mpc.kinds.persons import read_persons

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mpc.config.party import PartyConfig
    from mpc.config.spec import UseCaseSpec
    from mpc.engine.secret import MpcContext
    from mpc.protocols.aggregate import Released

LEFT, RIGHT = "left", "right"
MAX_WIDTH = 4096  # attribute combinations per side the dealer takes


@dataclass(frozen=True)
class Side:
    party: str
    dataset: str
    by: tuple[str, ...]
    reduce: Reduce | None = None
    window: Window | None = None  # only this side's rows in this period
    filters: Filters = ()  # only its rows with these values


@dataclass(frozen=True, kw_only=True)
class LinkageJob(Section):
    kind = "linkage"
    key: str  # the column that identifies a person at both parties
    left: Side
    right: Side
    pad_to: int  # public bound: each list is padded with dummies to this many persons

    def side_of(self, party: str) -> Side:
        return self.left if party == self.left.party else self.right

    def dataset_of(self, party: str) -> str:
        return self.side_of(party).dataset

    def scope_of(self, party: str) -> tuple[Window | None, Filters]:
        side = self.side_of(party)
        return side.window, side.filters

    def persons(self) -> PersonList:
        return PersonList(self.key, self.pad_to)

    def query(self) -> dict[str, Any]:
        return {"linkage": {"key": self.key, LEFT: asdict(self.left),
                            RIGHT: asdict(self.right)}}

    def widths(self) -> tuple[int, int]:
        """Attribute widths of the left and right rows: the number of `by` combinations."""
        sizes = dict(self.categories)
        return (math.prod(len(sizes[c]) for c in self.left.by),
                math.prod(len(sizes[c]) for c in self.right.by))


@dataclass(frozen=True)
class PersonInput(LocalInput):
    ids: list[str]
    cells: np.ndarray  # each person's attribute cell


class _Matching(DealerPart):
    """The dealer matches the two doubly blinded lists and shares the matched rows."""

    def wanted(self, parties: int) -> set[str]:
        return {LEFT, RIGHT}

    def hands_over(self, parties: int, rank: int, name: str) -> bool:
        # The left list, blinded by both keys, comes from the right side and vice versa.
        return parties == 2 and name in (LEFT, RIGHT) and rank == (1 if name == LEFT else 0)

    def params_problem(self, parties: int, widths: tuple[int, ...], pad_to: int) -> str | None:
        if parties != 2 or len(widths) != 2 or not all(0 < w <= MAX_WIDTH for w in widths) \
                or not 0 < pad_to <= MAX_PAD:
            return "malformed linkage parameters"
        return None

    def outcome(self, job_id: str, seeds: list[bytes], lists: dict[str, bytes],
                widths: tuple[int, ...], pad_to: int) -> list[list[torch.Tensor]]:
        from mpc.protocols.blind import POINT_BYTES
        from mpc.protocols.linking import link_outcome

        for name in (LEFT, RIGHT):
            if len(lists[name]) != pad_to * POINT_BYTES:
                raise ValueError(f"list {name} is not padded to {pad_to}")
        return link_outcome(job_id, seeds, pad_to, (widths[0], widths[1]), lists[LEFT],
                            lists[RIGHT])


class Linkage(JobKind):
    name = LinkageJob.kind
    scalar = "linked"
    scalar_label = "Linked persons"
    # Linked cross tables suppress zeros by default: a 0 next to small counts says too much.
    suppress_zero_default = True
    dealer = _Matching(parts=("shares", "positions", "corrections"))

    def parse(self, f: Fields, parties: tuple[str, ...]) -> LinkageJob:
        table = f.table("linkage")
        assert table is not None
        key, left, right = table.str("key"), _side(table, LEFT), _side(table, RIGHT)
        pad_to = parse_pad_to(table)
        table.done()
        if parties != (left.party, right.party):
            raise f.error("parties",
                          "a linkage has two parties: the left side's, then the right's")
        group_by = left.by + right.by
        if not group_by:
            raise table.error(LEFT, "give `by` columns to cross on at least one side")
        if len(set(group_by)) != len(group_by):
            raise table.error(RIGHT, "the two sides' `by` columns must have different names")
        categories = parse_categories(f, group_by, "not a `by` column of either side")
        return LinkageJob(group_by=group_by, categories=categories, key=key, left=left,
                          right=right, pad_to=pad_to)

    def local_input(self, spec: UseCaseSpec, config: PartyConfig) -> PersonInput:
        assert isinstance(spec.job, LinkageJob)
        side = spec.job.side_of(config.name)
        ids, cells, committed = read_persons(spec, config, side.by, side.reduce,
                                             distinct_only=False)
        return PersonInput("one row per person", committed, ids=ids, cells=cells)

    def prepare(self, job: JobContext, local: LocalInput) -> Any:
        from mpc.protocols.linkage import linkage_shares

        section = job.spec.job
        assert isinstance(local, PersonInput) and isinstance(section, LinkageJob)
        return linkage_shares(job.link, local.ids, local.cells, section.widths(),
                              section.pad_to, job.phase)

    def compute(self, mpc: MpcContext, job: JobContext, prepared: Any) -> Released:
        from mpc.protocols.linkage import cross_table

        return cross_table(mpc, prepared, job.rules, job.phase)

    def measure_words(self, spec: UseCaseSpec) -> str:
        return "number of linked persons"  # persons found at both parties

    def rules_words(self, spec: UseCaseSpec, rules: DisclosureRules) -> str:
        # Each cell counts persons present at both parties: there is no one-party subtotal
        # for a contributor rule to protect.
        return ("Each cell counts persons found at both parties, one row per person at "
                "each. The number of linked persons is released under the same rules.")


def _side(table: Fields, key: str) -> Side:
    side = table.table(key)
    assert side is not None
    reduce = parse_reduce(side)
    result = Side(party=side.str("party"), dataset=side.str("dataset"),
                  by=side.str_list("by", (), non_empty=False), reduce=reduce,
                  window=parse_window(side), filters=parse_filters(side))
    side.done()
    for column, _ in result.filters:
        if column in result.by:
            raise side.error("filter", f"{column!r} is a `by` column: list fewer categories "
                                       "instead of filtering it")
    return result


KIND = Linkage()
