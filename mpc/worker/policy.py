"""A party's local policy: which coordinators, which use cases, which minimum rules."""

from __future__ import annotations

from mpc.config.party import PartyConfig
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
                     "([limits] max_cells)")
    if len(spec.parties) > limits.max_parties:
        raise refuse(f"the job has {len(spec.parties)} parties; its limit is "
                     f"{limits.max_parties} ([limits] max_parties)")
    if config.name not in spec.parties:
        raise refuse(f"it is not one of the use case's parties ({', '.join(spec.parties)})")
    if spec.dataset_of(config.name) not in config.datasets:
        raise refuse(f"it has no dataset named {spec.dataset_of(config.name)!r}")
    return spec


def floors(config: PartyConfig) -> DisclosureRules:
    """The minimum rules this party applies whatever the spec says."""
    return DisclosureRules(min_cell=config.policy.min_cell_floor, suppress_zero=False,
                           min_contributors=config.policy.min_contributors_floor)
