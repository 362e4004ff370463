"""Use case specs: TOML read into frozen dataclasses, hashed over their exact bytes."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from mpc.config.fields import Fields, load_toml, parse_toml
from mpc.errors import ConfigError
from mpc.transport.validate import name_problem

COORDINATOR = "coordinator"  # the recipient name that means "whoever submitted the job"

MeasureKind = Literal["count", "count_distinct", "sum"]


@dataclass(frozen=True)
class Measure:
    kind: MeasureKind
    column: str | None = None

    @classmethod
    def parse(cls, text: str, fields: Fields, key: str) -> Measure:
        kind, _, column = text.partition(":")
        if kind == "count" and not column:
            return cls("count")
        if kind in ("count_distinct", "sum") and column:
            return cls(kind, column)  # type: ignore[arg-type]
        raise fields.error(
            key, f"expected 'count', 'count_distinct:<column>' or 'sum:<column>', got {text!r}"
        )

    def __str__(self) -> str:
        return self.kind if self.column is None else f"{self.kind}:{self.column}"


@dataclass(frozen=True)
class DisclosureRules:
    """The rules a release is made under, all evaluated on secret shares: the small-cell
    rules, and for noisy releases the sensitivity the noise is calibrated to. Every party
    applies the strictest of the spec's and each party's floors, and the parties agree on
    one digest of them before anything is shared."""

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


@dataclass(frozen=True)
class Window:
    """Rows whose `column` (a date) lies in [start, end): ISO dates, end exclusive."""

    column: str
    start: str
    end: str

    def overlaps(self, other: Window) -> bool:
        return self.column != other.column or (self.start < other.end and other.start < self.end)


NOISE_MECHANISMS = ("discrete_laplace", "discrete_gaussian")


@dataclass(frozen=True)
class Noise:
    """Differential privacy: noise drawn inside MPC before anything is opened."""

    mechanism: str  # discrete_laplace (epsilon-DP) or discrete_gaussian ((epsilon, delta)-DP)
    epsilon: float
    delta: float = 0.0
    # How much one person's rows at one party can change the table (L1; bounds L2 too).
    # Never from the spec: the parties derive it from their contribution bounds and agree
    # on the largest before anything is shared (worker/job_process.py).
    sensitivity: int = 1


PARTIES_SEEN = "parties_seen"  # the overlap histogram's one column


@dataclass(frozen=True)
class Reduce:
    """One row per person: the first (or last) of its rows ordered by a column."""

    order_by: str
    keep: str = "first"


@dataclass(frozen=True)
class Side:
    party: str
    dataset: str
    by: tuple[str, ...]
    reduce: Reduce | None = None
    window: Window | None = None  # only this side's rows in this period
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()  # only its rows with these values


@dataclass(frozen=True)
class Linkage:
    key: str  # the column that identifies a person at both parties
    left: Side
    right: Side
    pad_to: int  # public bound: each list is padded with dummies to this many persons


@dataclass(frozen=True)
class Overlap:
    key: str
    pad_to: int


@dataclass(frozen=True)
class UseCaseSpec:
    name: str
    kind: Literal["aggregate", "linkage", "overlap"]
    parties: tuple[str, ...]
    recipients: tuple[str, ...]
    dataset: str
    group_by: tuple[str, ...]
    measure: Measure
    categories: tuple[tuple[str, tuple[str, ...]], ...]  # in group_by order
    disclosure: DisclosureRules
    text: bytes  # the exact bytes the parties hash and agree on
    source: str = "<spec>"
    window: Window | None = None
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()  # column -> values kept
    noise: Noise | None = None
    round_to: int = 1  # released (noisy) values are rounded to a multiple of this
    linkage: Linkage | None = None
    overlap: Overlap | None = None

    @property
    def scalar(self) -> str | None:
        """The single value released besides the table: linked or distinct persons."""
        return {"linkage": "linked", "overlap": "distinct"}.get(self.kind)

    @property
    def released_size(self) -> int:
        """How many values a release holds: the cells, then the scalar if any."""
        return self.cells + (1 if self.scalar else 0)

    def scope_of(self, party: str) -> tuple[Window | None,
                                            tuple[tuple[str, tuple[str, ...]], ...]]:
        """The window and filters applied to `party`'s rows: a linkage side's own, or the
        job's `[input]` ones."""
        if self.linkage is not None:
            side = self.linkage.left if party == self.linkage.left.party else self.linkage.right
            return side.window, side.filters
        return self.window, self.filters

    def dataset_of(self, party: str) -> str:
        """The dataset `party` computes on in this job."""
        if self.linkage is not None:
            side = self.linkage.left if party == self.linkage.left.party else self.linkage.right
            return side.dataset
        return self.dataset

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


KINDS = ("aggregate", "linkage", "overlap")
MAX_PAD = 10_000_000


def parse_spec(raw: bytes, source: str = "<spec>") -> UseCaseSpec:
    f = Fields(parse_toml(raw, source), source)
    name = f.str("name")
    kind = f.str("kind")
    if kind not in KINDS:
        raise f.error("kind", f"unknown kind {kind!r} (expected {', '.join(KINDS)})")
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

    dataset, window, filters = "", None, ()
    linkage, overlap = None, None
    measure = Measure("count")
    if kind == "linkage":
        linkage, group_by = _linkage(f, parties)
    else:
        inp = f.table("input")
        assert inp is not None
        dataset = inp.str("dataset")
        window = _window(inp)
        filters = _filters(inp)
        inp.done()
    if kind == "aggregate":
        agg = f.table("aggregate")
        assert agg is not None
        group_by = agg.str_list("group_by")
        measure = Measure.parse(agg.str("measure", "count"), agg, "measure")
        agg.done()
        if measure.column in group_by:
            raise agg.error("measure", f"column {measure.column!r} is also a group_by column")
    if kind == "overlap":
        table = f.table("overlap")
        assert table is not None
        overlap = Overlap(key=table.str("key"), pad_to=_pad_to(table))
        table.done()
        group_by = (PARTIES_SEEN,)
        categories: list[tuple[str, tuple[str, ...]]] = [
            (PARTIES_SEEN, tuple(str(k) for k in range(1, len(parties) + 1)))]
    else:
        cat = f.table("categories")
        assert cat is not None
        categories = []
        for column in group_by:
            if not cat.has(column):
                raise cat.error(column, "every group_by column needs its list of categories")
            categories.append((column, cat.str_list(column, as_text=True)))
        extra = sorted(set(cat.names()) - set(group_by))
        if extra:
            raise cat.error(extra[0], "not a group_by column" if kind == "aggregate"
                            else "not a `by` column of either side")
    for column, _ in filters:
        if column in group_by:
            raise f.error("input", f"filter: {column!r} is a group_by column: list fewer "
                                   "categories instead of filtering it")

    disc = f.table("disclosure", None)
    # Linked cross tables suppress zeros by default: a 0 next to small counts says too much.
    rules = DisclosureRules(suppress_zero=kind == "linkage")
    noise, round_to = None, 1
    if disc is not None:
        noise = _noise(disc)
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
        if kind != "aggregate" and (rules.min_contributors > 1 or noise is not None):
            raise disc.error("min_contributors" if noise is None else "noise",
                             f"{kind} jobs take min_cell, suppress_zero and round_to only")
        disc.done()
    if f.has("family"):
        raise f.error("family", "no longer a spec field: the release ledger compares every "
                                "release on a dataset, whatever its name")
    f.done()
    spec = UseCaseSpec(
        name=name, kind=kind, parties=parties, recipients=recipients,  # type: ignore[arg-type]
        dataset=dataset, group_by=group_by, measure=measure, categories=tuple(categories),
        disclosure=rules, text=raw, source=source, window=window,
        filters=filters, noise=noise, round_to=round_to, linkage=linkage,
        overlap=overlap,
    )
    if spec.cells > 10_000_000:
        raise ConfigError(source, f"the table has {spec.cells} cells; the limit is 10,000,000",
                          field="categories")
    return spec


def _pad_to(table: Fields) -> int:
    pad = table.int("pad_to", minimum=1)
    if pad > MAX_PAD:
        raise table.error("pad_to", f"at most {MAX_PAD:,}")
    return pad


def _side(table: Fields, key: str) -> Side:
    side = table.table(key)
    assert side is not None
    reduce = None
    rule = side.table("reduce", None)
    if rule is not None:
        reduce = Reduce(order_by=rule.str("order_by"), keep=rule.str("keep", "first"))
        if reduce.keep not in ("first", "last"):
            raise rule.error("keep", f"expected 'first' or 'last', got {reduce.keep!r}")
        rule.done()
    result = Side(party=side.str("party"), dataset=side.str("dataset"),
                  by=side.str_list("by", (), non_empty=False), reduce=reduce,
                  window=_window(side), filters=_filters(side))
    side.done()
    for column, _ in result.filters:
        if column in result.by:
            raise side.error("filter", f"{column!r} is a `by` column: list fewer categories "
                                       "instead of filtering it")
    return result


def _linkage(f: Fields, parties: tuple[str, ...]) -> tuple[Linkage, tuple[str, ...]]:
    table = f.table("linkage")
    assert table is not None
    linkage = Linkage(key=table.str("key"), left=_side(table, "left"),
                      right=_side(table, "right"), pad_to=_pad_to(table))
    table.done()
    if parties != (linkage.left.party, linkage.right.party):
        raise f.error("parties", "a linkage has two parties: the left side's, then the right's")
    group_by = linkage.left.by + linkage.right.by
    if not group_by:
        raise table.error("left", "give `by` columns to cross on at least one side")
    if len(set(group_by)) != len(group_by):
        raise table.error("right", "the two sides' `by` columns must have different names")
    return linkage, group_by


def _iso_date(table: Fields, key: str) -> str:
    if not table.has(key):
        raise table.error(key, "required field is missing")
    value = table.raw(key)
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise table.error(key, f"expected a date like 2024-01-01, got {value!r}")


def _window(inp: Fields) -> Window | None:
    table = inp.table("window", None)
    if table is None:
        return None
    window = Window(column=table.str("column"), start=_iso_date(table, "from"),
                    end=_iso_date(table, "to"))
    table.done()
    if window.start >= window.end:
        raise table.error("to", f"the window ends ({window.end}) before it starts "
                                f"({window.start})")
    return window


def _filters(inp: Fields) -> tuple[tuple[str, tuple[str, ...]], ...]:
    table = inp.table("filter", None)
    if table is None:
        return ()
    filters = tuple((column, table.str_list(column, as_text=True)) for column in table.names())
    table.done()
    if not filters:
        raise inp.error("filter", "an empty filter keeps nothing: leave it out")
    return filters


def _noise(disc: Fields) -> Noise | None:
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
    if mechanism == "discrete_gaussian" and not 0 < noise.delta < 1:
        raise table.error("delta", "the discrete Gaussian needs 0 < delta < 1")
    if mechanism == "discrete_laplace" and noise.delta != 0:
        raise table.error("delta", "the discrete Laplace mechanism takes no delta")
    return noise
