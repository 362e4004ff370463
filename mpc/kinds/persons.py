"""What the person-list kinds (linkage, overlap) share: reading one row per person."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpc.config.scope import Reduce

if TYPE_CHECKING:
    import numpy as np

    from mpc.config.party import PartyConfig
    from mpc.config.spec import UseCaseSpec


def read_persons(spec: UseCaseSpec, config: PartyConfig, by: tuple[str, ...],
                 reduce: Reduce | None, distinct_only: bool) -> tuple[list[str], np.ndarray,
                                                                    bytes]:
    """This party's persons in scope (ids, attribute cells) and the bytes it commits to."""
    from mpc.audit.digests import table_bytes
    from mpc.connectors.persons import PersonRequest, compute_person_rows
    from mpc.errors import DataError

    persons = spec.job.persons()
    assert persons is not None
    name = spec.dataset_of(config.name)
    dataset = config.datasets[name]
    window, filters = spec.scope_of(config.name)
    categories = tuple((c, v) for c, v in spec.categories if c in by)
    request = PersonRequest(config.name, name, persons.key, by, categories, reduce,
                            window=window, filters=filters,
                            max_persons=dataset.bounds.max_persons)
    rows = compute_person_rows(dataset, request, distinct_only=distinct_only)
    if len(rows.ids) > persons.pad_to:
        # Unreachable when the policy held (pad_to >= max_persons >= the dataset's persons);
        # kept so that a bug cannot turn into a list larger than its public size.
        raise DataError(config.name, name, "has more persons than the list bound", persons.key)
    return rows.ids, rows.cells, "\n".join(rows.ids).encode() + table_bytes(rows.cells)
