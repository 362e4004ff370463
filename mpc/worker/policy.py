"""A party's local policy: which coordinators, which use cases, which minimum rules, and
what a spec may ask of each dataset (its bounds). Everything here is decided on the spec
and the party's config alone, before any data is read, so a refusal never depends on data.
"""

from __future__ import annotations

import datetime as dt

from mpc.config.bounds import DatasetBounds
from mpc.config.party import PartyConfig, raised_by
from mpc.config.spec import DisclosureRules, UseCaseSpec, parse_spec
from mpc.errors import ConfigError, PolicyRefused


def approve(config: PartyConfig, spec_bytes: bytes, coordinator: str) -> UseCaseSpec:
    """The parsed spec if this party's policy allows the job; PolicyRefused otherwise."""
    policy = config.policy
    refuse = lambda reason: PolicyRefused(config.name, reason)  # noqa: E731
    if coordinator not in policy.coordinators:
        raise refuse(f"coordinator {coordinator!r} is not allowed by its policy")
    try:
        spec = parse_spec(spec_bytes, "submitted spec")
    except ConfigError as exc:
        raise refuse(f"the spec is invalid: {exc}") from None
    if spec.name not in policy.usecases:
        raise refuse(f"use case {spec.name!r} is not allowed by its policy")
    pinned = policy.pinned.get(spec.name)
    if pinned is not None and pinned != spec.sha256:
        raise refuse(f"use case {spec.name!r} is pinned to SHA-256 {pinned[:12]}…, "
                     f"the submitted spec has {spec.sha256[:12]}…")
    limits = config.limits
    if spec.cells > limits.max_cells:
        raise refuse(f"the table has {spec.cells} cells; its limit is {limits.max_cells} "
                     f"{raised_by('max_cells')}")
    if len(spec.parties) > limits.max_parties:
        raise refuse(f"the job has {len(spec.parties)} parties; its limit is "
                     f"{limits.max_parties} {raised_by('max_parties')}")
    if config.name not in spec.parties:
        raise refuse(f"it is not one of the use case's parties ({', '.join(spec.parties)})")
    dataset = spec.dataset_of(config.name)
    if dataset not in config.datasets:
        raise refuse(f"it has no dataset named {dataset!r}")
    problem = bounds_problem(spec, config.name, config.datasets[dataset].bounds)
    if problem is None and spec.noise is not None and \
            config.policy.min_contributors_floor > 1:
        problem = (f"its min_contributors_floor ({config.policy.min_contributors_floor}) "
                   "cannot be applied to a noisy release (the contributor rule looks at the "
                   "raw data); ask for the release without noise")
    if problem is not None:
        raise refuse(problem)
    return spec


def bounds_problem(spec: UseCaseSpec, party: str, bounds: DatasetBounds) -> str | None:
    """Why the spec asks more of this party's dataset than its bounds allow, if it does."""
    dataset = spec.dataset_of(party)
    where = f"[datasets.{dataset}.bounds]"
    if bounds.person_key is not None and bounds.person_key in spec.group_by:
        return f"dataset {dataset!r} is never grouped by its person key {bounds.person_key!r}"
    window, filters = spec.scope_of(party)
    for column, _ in filters:
        if column == bounds.person_key:
            return f"dataset {dataset!r} is never filtered on its person key {column!r}"
        if column not in bounds.filter_columns:
            allowed = ", ".join(bounds.filter_columns) or "none"
            return (f"dataset {dataset!r} may not be filtered on {column!r} (allowed: "
                    f"{allowed}; {where} filter_columns)")
    if window is not None:
        if window.column not in bounds.window_columns:
            allowed = ", ".join(bounds.window_columns) or "none"
            return (f"dataset {dataset!r} takes no window on {window.column!r} (allowed: "
                    f"{allowed}; {where} window_columns)")
        days = (dt.date.fromisoformat(window.end) - dt.date.fromisoformat(window.start)).days
        if days < bounds.min_window_days:
            return (f"the window covers {days} days; dataset {dataset!r} takes windows of at "
                    f"least {bounds.min_window_days} days ({where} min_window_days)")
    persons = spec.job.persons()
    if persons is not None:
        if bounds.person_key is None or bounds.max_persons is None:
            return (f"dataset {dataset!r} takes no {spec.kind} jobs: its bounds name no "
                    f"person_key and max_persons ({where})")
        if persons.key != bounds.person_key:
            return (f"dataset {dataset!r} identifies persons by {bounds.person_key!r}, not "
                    f"{persons.key!r} ({where} person_key)")
        if persons.pad_to < bounds.max_persons:
            return (f"pad_to {persons.pad_to} is below the list bound of dataset {dataset!r} "
                    f"({bounds.max_persons}, {where} max_persons): lists are padded to at "
                    "least the bound")
    if spec.measure.kind == "sum" and bounds.clip_of(spec.measure.column or "") is None:
        return (f"dataset {dataset!r} has no clipping range for summed column "
                f"{spec.measure.column!r} ({where} clip)")
    noise = spec.noise
    if noise is not None:
        if bounds.max_epsilon is None:
            return f"dataset {dataset!r} allows no noisy releases ({where} max_epsilon)"
        if noise.epsilon > bounds.max_epsilon:
            return (f"epsilon {noise.epsilon:g} exceeds the {bounds.max_epsilon:g} that "
                    f"dataset {dataset!r} allows per job ({where} max_epsilon)")
        if bounds.sensitivity(spec.measure.kind, spec.measure.column) is None:
            return (f"dataset {dataset!r} has no contribution bounds, so noise cannot be "
                    f"calibrated ({where} person_key, max_rows_per_person)")
    return None


def floors(config: PartyConfig, spec: UseCaseSpec) -> DisclosureRules:
    """The minimum rules this party applies to the job whatever the spec or the
    coordinator says; with noise, the sensitivity its own contribution bounds imply."""
    sensitivity = 0
    if spec.noise is not None:
        bounds = config.datasets[spec.dataset_of(config.name)].bounds
        sensitivity = bounds.sensitivity(spec.measure.kind, spec.measure.column) or 0
    return DisclosureRules(min_cell=config.policy.min_cell_floor, suppress_zero=False,
                           min_contributors=config.policy.min_contributors_floor,
                           sensitivity=sensitivity)
