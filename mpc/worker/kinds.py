"""What one job kind asks of a party: its local input, and its part of the computation.

aggregate: the local table (connectors/table.py), then protocols/aggregate.py.
linkage:   one row per person with its attributes (connectors/persons.py), then
           protocols/linkage.py's blinding, matching and cross table.
overlap:   the distinct persons (connectors/persons.py), then the ring of blinding and
           the dealer's histogram, corrected for dummies inside MPC.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from mpc.audit.digests import table_bytes
from mpc.config.party import PartyConfig
from mpc.config.spec import DisclosureRules, UseCaseSpec
from mpc.connectors import TableRequest, compute_local_table
from mpc.connectors.persons import PersonRequest, compute_person_rows
from mpc.errors import DataError

Phase = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class LocalInput:
    detail: str  # shown as progress: what was counted, without counts
    committed: bytes  # canonical bytes the party commits to in its audit log
    table: Any = None  # aggregate: LocalTable
    ids: list[str] | None = None  # linkage, overlap
    cells: np.ndarray | None = None  # linkage: each person's attribute cell


def widths(spec: UseCaseSpec) -> tuple[int, int]:
    """Attribute widths of the left and right rows: the number of `by` combinations."""
    assert spec.linkage is not None
    sizes = dict(spec.categories)
    return (math.prod(len(sizes[c]) for c in spec.linkage.left.by),
            math.prod(len(sizes[c]) for c in spec.linkage.right.by))


def local_input(spec: UseCaseSpec, config: PartyConfig) -> LocalInput:
    """This party's input, read where its data lives within its own bounds. Nothing in the
    job's scope can fail it (see connectors/): an empty scope is zeros or an empty list."""
    name = spec.dataset_of(config.name)
    dataset = config.datasets[name]
    if spec.kind == "aggregate":
        table = compute_local_table(dataset, TableRequest.from_spec(spec, config.name,
                                                                    dataset.bounds))
        return LocalInput(f"{spec.cells} cells", table_bytes(table.values, table.rows),
                          table=table)
    if spec.linkage is not None:
        side = (spec.linkage.left if config.name == spec.linkage.left.party
                else spec.linkage.right)
        key, by, reduce, pad_to = spec.linkage.key, side.by, side.reduce, spec.linkage.pad_to
    else:
        assert spec.overlap is not None
        key, by, reduce, pad_to = spec.overlap.key, (), None, spec.overlap.pad_to
    window, filters = spec.scope_of(config.name)
    categories = tuple((c, v) for c, v in spec.categories if c in by)
    request = PersonRequest(config.name, name, key, by, categories, reduce, window=window,
                            filters=filters, max_persons=dataset.bounds.max_persons)
    rows = compute_person_rows(dataset, request, distinct_only=spec.kind == "overlap")
    if len(rows.ids) > pad_to:
        # Unreachable when the policy held (pad_to >= max_persons >= the dataset's persons);
        # kept so that a bug cannot turn into a list larger than its public size.
        raise DataError(config.name, name, "has more persons than the list bound", key)
    committed = "\n".join(rows.ids).encode() + table_bytes(rows.cells)
    return LocalInput("one row per person", committed, ids=rows.ids, cells=rows.cells)


def joint(spec: UseCaseSpec, local: LocalInput, io: Any, session: Any,
          rules: DisclosureRules, phase: Phase,
          finish: Callable[[Any, Any], T]) -> T:
    """Run this party's part of the job; `finish(ctx, released)` hands the released
    secrets on while the engine session is still open."""
    from mpc.protocols.aggregate import aggregate
    from mpc.protocols.linkage import cross_table, linkage_shares, overlap_counts, overlap_shares
    from mpc.protocols.noise import noise_share, noise_source

    if spec.kind == "aggregate":
        noise = None
        applied = spec.noise_under(rules)
        if applied is not None:
            noise = torch.from_numpy(noise_share(applied, len(spec.parties), spec.cells,
                                                 noise_source()))
        with session as ctx:
            return finish(ctx, aggregate(ctx, torch.from_numpy(local.table.values),
                                         torch.from_numpy(local.table.rows), rules,
                                         phase=phase, noise=noise))
    assert local.ids is not None
    if spec.linkage is not None:
        assert local.cells is not None
        shares = linkage_shares(io, local.ids, local.cells, widths(spec), spec.linkage.pad_to,
                                phase)
        with session as ctx:
            return finish(ctx, cross_table(ctx, shares, rules, phase))
    assert spec.overlap is not None
    counts, dummies = overlap_shares(io, local.ids, spec.overlap.pad_to, phase)
    with session as ctx:
        return finish(ctx, overlap_counts(ctx, counts, dummies, rules, phase))
