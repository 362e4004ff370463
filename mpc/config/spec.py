"""Use case specs: TOML read into frozen dataclasses, hashed over their exact bytes."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, replace
from pathlib import Path

from mpc.config.fields import Fields, load_toml, parse_toml
from mpc.config.rules import DisclosureRules, Measure, Noise, parse_noise
from mpc.config.scope import Filters, Reduce, Window
from mpc.errors import ConfigError
from mpc.kinds import KINDS, Section
from mpc.transport.validate import name_problem, usecase_problem

# Re-exported: most modules take the spec's pieces from here.
__all__ = ["COORDINATOR", "DisclosureRules", "Measure", "Noise", "Reduce", "UseCaseSpec",
           "Window", "load_spec", "parse_spec"]

COORDINATOR = "coordinator"  # the recipient name that means "whoever submitted the job"

@dataclass(frozen=True)
class UseCaseSpec:
    """A use case: who takes part, who receives, the rules, and `job`, the kind's own
    section (a tagged union over mpc/kinds/: AggregateJob, LinkageJob, OverlapJob)."""

    name: str
    parties: tuple[str, ...]
    recipients: tuple[str, ...]
    job: Section
    disclosure: DisclosureRules
    text: bytes  # the exact bytes the parties hash and agree on
    source: str = "<spec>"
    noise: Noise | None = None
    round_to: int = 1  # released (noisy) values are rounded to a multiple of this

    @property
    def kind(self) -> str:
        return self.job.kind

    @property
    def group_by(self) -> tuple[str, ...]:
        return self.job.group_by

    @property
    def categories(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return self.job.categories

    @property
    def measure(self) -> Measure:
        return self.job.measure

    @property
    def scalar(self) -> str | None:
        """The single value released besides the table, if the kind has one."""
        return KINDS[self.kind].scalar

    @property
    def released_size(self) -> int:
        """How many values a release holds (the kind's layout)."""
        return KINDS[self.kind].released_size(self)

    def scope_of(self, party: str) -> tuple[Window | None, Filters]:
        """The window and filters applied to `party`'s rows."""
        return self.job.scope_of(party)

    def dataset_of(self, party: str) -> str:
        """The dataset `party` computes on in this job."""
        return self.job.dataset_of(party)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text).hexdigest()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(values) for _, values in self.categories)

    @property
    def cells(self) -> int:
        n = 1
        for size in self.shape:
            n *= size
        return n

    def category_rows(self) -> list[tuple[str, ...]]:
        """Every combination of categories, in output (row-major) order."""
        return list(itertools.product(*(values for _, values in self.categories)))

    def noise_under(self, rules: DisclosureRules) -> Noise | None:
        """The noise as applied: the spec's mechanism, epsilon and delta, calibrated to the
        sensitivity the parties agreed on (never one the spec states)."""
        if self.noise is None:
            return None
        return replace(self.noise, sensitivity=max(1, rules.sensitivity))

    def rank_of(self, party: str) -> int:
        return self.parties.index(party)


def load_spec(path: Path) -> UseCaseSpec:
    _, raw = load_toml(path)
    return parse_spec(raw, str(path))


def parse_spec(raw: bytes, source: str = "<spec>") -> UseCaseSpec:
    f = Fields(parse_toml(raw, source), source)
    name = f.str("name")
    if usecase_problem(name):  # it names the result folder: never a path
        raise f.error("name", str(usecase_problem(name)))
    kind_name = f.str("kind")
    kind = KINDS.get(kind_name)
    if kind is None:
        raise f.error("kind", f"unknown kind {kind_name!r} (expected {', '.join(KINDS)})")
    parties = f.str_list("parties")
    for party in parties:
        if name_problem(party):
            raise f.error("parties", str(name_problem(party)))
    if len(parties) < 2:
        raise f.error("parties", "a joint computation needs at least two parties")
    if COORDINATOR in parties:
        raise f.error("parties", f"'{COORDINATOR}' is a role, not a data party")
    recipients = f.str_list("recipients", (COORDINATOR,))
    for r in recipients:
        if r != COORDINATOR and r not in parties:
            raise f.error("recipients", f"{r!r} is neither '{COORDINATOR}' nor a party of the job")

    section = kind.parse(f, parties)
    disc = f.table("disclosure", None)
    rules = DisclosureRules(suppress_zero=kind.suppress_zero_default)
    noise, round_to = None, 1
    if disc is not None:
        noise = parse_noise(disc)
        round_to = disc.int("round_to", 1, minimum=1)
        rules = DisclosureRules(
            min_cell=disc.int("min_cell", rules.min_cell, minimum=1),
            suppress_zero=disc.bool("suppress_zero", rules.suppress_zero),
            min_contributors=disc.int("min_contributors", rules.min_contributors, minimum=1),
        )
        if rules.min_contributors > len(parties):
            raise disc.error(
                "min_contributors",
                f"{rules.min_contributors} exceeds the {len(parties)} parties of the job: "
                "every non-zero cell would be suppressed",
            )
        if noise is not None and rules.min_contributors > 1:
            raise disc.error("min_contributors", "the contributor rule looks at the raw data, "
                                                 "so a noisy release cannot apply it")
        if (rules.min_contributors > 1 and not kind.takes_contributor_rule) or \
                (noise is not None and not kind.takes_noise):
            raise disc.error("min_contributors" if noise is None else "noise",
                             f"{kind.name} jobs take min_cell, suppress_zero and round_to only")
        if round_to > 1 and not kind.takes_rounding:
            raise disc.error("round_to", f"{kind.name} jobs release no values to round")
        disc.done()
    if f.has("family"):
        raise f.error("family", "no longer a spec field: the release ledger compares every "
                                "release on a dataset, whatever its name")
    f.done()
    spec = UseCaseSpec(name=name, parties=parties, recipients=recipients, job=section,
                       disclosure=rules, text=raw, source=source, noise=noise,
                       round_to=round_to)
    if spec.cells > 10_000_000:
        raise ConfigError(source, f"the table has {spec.cells} cells; the limit is 10,000,000",
                          field="categories")
    return spec
