"""TOML configs read into typed, frozen dataclasses: party, dealer, federation, use case."""

from mpc.config.federation import Federation, Member, load_federation
from mpc.config.party import (
    DatasetConfig,
    DealerConfig,
    PartyConfig,
    Policy,
    TlsFiles,
    load_dealer_config,
    load_party_config,
)
from mpc.config.spec import (
    COORDINATOR,
    DisclosureRules,
    Measure,
    UseCaseSpec,
    load_spec,
    parse_spec,
)

__all__ = [
    "COORDINATOR",
    "DatasetConfig",
    "DealerConfig",
    "DisclosureRules",
    "Federation",
    "Measure",
    "Member",
    "PartyConfig",
    "Policy",
    "TlsFiles",
    "UseCaseSpec",
    "load_dealer_config",
    "load_federation",
    "load_party_config",
    "load_spec",
    "parse_spec",
]
