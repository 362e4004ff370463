"""What a release is made under: the measure a cell holds, the disclosure rules, the noise.

Shared by every job kind (mpc/kinds/) and by the spec that carries them (spec.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final, Literal

from mpc.config.fields import Fields

MeasureKind = Literal["count", "count_distinct", "sum"]
COUNT: Final = "count"
COUNT_DISTINCT: Final = "count_distinct"
SUM: Final = "sum"


@dataclass(frozen=True)
class Measure:
    kind: MeasureKind
    column: str | None = None

    @classmethod
    def parse(cls, text: str, fields: Fields, key: str) -> Measure:
        kind, _, column = text.partition(":")
        if kind == COUNT and not column:
            return cls(COUNT)
        if kind == COUNT_DISTINCT and column:
            return cls(COUNT_DISTINCT, column)
        if kind == SUM and column:
            return cls(SUM, column)
        raise fields.error(
            key, f"expected 'count', 'count_distinct:<column>' or 'sum:<column>', got {text!r}"
        )

    def __str__(self) -> str:
        return self.kind if self.column is None else f"{self.kind}:{self.column}"


@dataclass(frozen=True)
class DisclosureRules:
    """The rules a release is made under, all evaluated on secret shares: the small-cell
    rules, and for noisy releases the sensitivity the noise is calibrated to. Every party
    applies the strictest of the spec's and each party's floors (`applied_rules`), and the
    parties agree on one digest of them before anything is shared."""

    min_cell: int = 10
    suppress_zero: bool = False
    min_contributors: int = 1
    sensitivity: int = 0  # with noise: the largest of the parties' contribution bounds

    def with_floors(self, floors: DisclosureRules) -> DisclosureRules:
        """The stricter of these rules and a party's floors."""
        return replace(
            self,
            min_cell=max(self.min_cell, floors.min_cell),
            suppress_zero=self.suppress_zero or floors.suppress_zero,
            min_contributors=max(self.min_contributors, floors.min_contributors),
            sensitivity=max(self.sensitivity, floors.sensitivity),
        )

    def at_least_as_strict_as(self, other: DisclosureRules) -> bool:
        return (
            self.min_cell >= other.min_cell
            and self.min_contributors >= other.min_contributors
            and (self.suppress_zero or not other.suppress_zero)
            and self.sensitivity >= other.sensitivity
        )

    def keeps(self, value: int, contributors: int) -> bool:
        """Plaintext statement of the rule (the MPC circuit computes the same on shares)."""
        if value == 0:
            return not self.suppress_zero
        return value >= self.min_cell and contributors >= self.min_contributors


def applied_rules(asked: DisclosureRules, floors: Iterable[DisclosureRules]) -> DisclosureRules:
    """The rules a job is released under: the spec's, raised to every party's floors. The
    one place rules meet floors (worker, job process and coordinator all call this)."""
    rules = asked
    for floor in floors:
        rules = rules.with_floors(floor)
    return rules


DISCRETE_LAPLACE, DISCRETE_GAUSSIAN = "discrete_laplace", "discrete_gaussian"
NOISE_MECHANISMS = (DISCRETE_LAPLACE, DISCRETE_GAUSSIAN)


@dataclass(frozen=True)
class Noise:
    """Differential privacy: noise drawn inside MPC before anything is opened."""

    mechanism: str  # discrete_laplace (epsilon-DP) or discrete_gaussian ((epsilon, delta)-DP)
    epsilon: float
    delta: float = 0.0
    # How much one person's rows at one party can change the table (L1; bounds L2 too).
    # Never from the spec: the parties derive it from their contribution bounds and agree
    # on the largest before anything is shared (see UseCaseSpec.noise_under).
    sensitivity: int = 1


def parse_noise(disc: Fields) -> Noise | None:
    table = disc.table("noise", None)
    if table is None:
        return None
    mechanism = table.str("mechanism")
    if mechanism not in NOISE_MECHANISMS:
        raise table.error("mechanism", f"expected one of {', '.join(NOISE_MECHANISMS)}")
    if table.has("sensitivity"):
        raise table.error("sensitivity", "not a spec field: each party derives it from its "
                                         "contribution bounds ([datasets.<name>.bounds])")
    noise = Noise(mechanism=mechanism, epsilon=table.float("epsilon"),
                  delta=table.float("delta", 0.0))
    table.done()
    if not 0 < noise.epsilon <= 20:
        raise table.error("epsilon", "must be in (0, 20]")
    if mechanism == DISCRETE_GAUSSIAN and not 0 < noise.delta < 1:
        raise table.error("delta", "the discrete Gaussian needs 0 < delta < 1")
    if mechanism == DISCRETE_LAPLACE and noise.delta != 0:
        raise table.error("delta", "the discrete Laplace mechanism takes no delta")
    return noise
