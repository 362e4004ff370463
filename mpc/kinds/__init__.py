"""The job kinds, one module each, and the registry that maps a spec's `kind` to its module.

Adding a kind: write mpc/kinds/<name>.py (see base.py and docs/ARCHITECTURE.md) and add
its KIND to `_ALL` below. Nothing else in the code names a kind.
"""

from __future__ import annotations

from mpc.kinds import aggregate, distribution, linkage, overlap
from mpc.kinds.base import DealerPart, JobContext, JobKind, LocalInput, PersonList, Section

_ALL: tuple[JobKind, ...] = (aggregate.KIND, linkage.KIND, overlap.KIND, distribution.KIND)
KINDS: dict[str, JobKind] = {kind.name: kind for kind in _ALL}
# The dealer serves each outcome part for the one kind that declares it.
DEALER_PARTS: dict[str, tuple[DealerPart, int]] = {
    part: (kind.dealer, index) for kind in _ALL if kind.dealer is not None
    for index, part in enumerate(kind.dealer.parts)}

__all__ = ["DEALER_PARTS", "KINDS", "DealerPart", "JobContext", "JobKind", "LocalInput",
           "PersonList", "Section", "kind_of"]


def kind_of(section: Section) -> JobKind:
    """The kind whose spec section this is."""
    return KINDS[section.kind]
