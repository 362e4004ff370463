"""The bounds the demo's parties set on the generated datasets, as a data steward would.

They match the shipped parties/*/party.toml: who a person is, at most five treatment rows
per person (the generator's longest history), lists of at most 10,000 persons, windows of
at least 90 days, epsilon at most 1 per job out of 10, and a clipping range for packs.
"""

from __future__ import annotations

from typing import Any

DEMO_BOUNDS: dict[str, dict[str, Any]] = {
    "treatments": {"person_key": "pseudonym", "max_rows_per_person": 5,
                   "max_persons": 10_000, "filter_columns": ["indication"],
                   "window_columns": ["start_date"], "min_window_days": 90,
                   "max_epsilon": 1.0, "epsilon_budget": 10.0, "delta_budget": 1e-5},
    "treatment_episodes": {"person_key": "pseudonym", "max_rows_per_person": 5,
                           "filter_columns": ["indication"], "window_columns": ["start_date"],
                           "min_window_days": 90},
    "claims": {"person_key": "pseudonym", "max_persons": 10_000,
               "window_columns": ["claim_date"], "min_window_days": 90},
    "dispensing": {"clip": {"packs": [0, 100_000]}},
}


def demo_bounds(dataset: str, **overrides: Any) -> dict[str, Any]:
    """The demo's bounds of one dataset (none for a dataset it does not know)."""
    return {**DEMO_BOUNDS.get(dataset, {}), **overrides}
