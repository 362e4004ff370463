"""What a party allows a spec to ask of one of its datasets: `[datasets.<name>.bounds]`.

The coordinator writes the spec, so every bound that protects the party's data is the
party's to set: which columns may be filtered, the shortest window, the list bound of
linkage and overlap, how many rows one person may contribute, the clipping range of a
summed column, the largest epsilon per job and the budgets. A spec may ask for stricter
values, never weaker; worker/policy.py refuses it before any data is read.

Defaults are the safe ones: no filters, no windows, no differential privacy, no linkage
or overlap until the party says how large its lists may be and who a person is.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpc.config.fields import Fields

MAX_LIST_BOUND = 10_000_000


@dataclass(frozen=True)
class Clip:
    """Each row's value of a summed column is clipped to [low, high] inside the engine."""

    low: int
    high: int

    @property
    def per_row(self) -> int:
        """The most one row can add to a sum."""
        return max(abs(self.low), abs(self.high))


@dataclass(frozen=True)
class DatasetBounds:
    person_key: str | None = None  # the column that identifies a person
    max_rows_per_person: int | None = None  # rows beyond this per person are left out
    max_persons: int | None = None  # list bound of linkage and overlap (persons in the dataset)
    filter_columns: tuple[str, ...] = ()  # columns a spec may filter on
    window_columns: tuple[str, ...] = ()  # date columns a spec may restrict to a window
    min_window_days: int = 90  # the shortest window a spec may ask for
    clip: tuple[tuple[str, Clip], ...] = ()  # summed column -> its clipping range
    max_epsilon: float | None = None  # per job; None: no differentially private release
    epsilon_budget: float = 0.0  # the total over all jobs on this dataset
    delta_budget: float = 0.0
    ledger: bool = True  # false only for synthetic or public data: no differencing check

    def clip_of(self, column: str) -> Clip | None:
        return dict(self.clip).get(column)

    def sensitivity(self, measure_kind: str, column: str | None) -> int | None:
        """How much one person's rows can change the table in total (L1, and a bound on
        L2): at most k rows, each adding at most one (counts, distinct counts) or its
        clipping bound (sums). None when the bounds do not say."""
        if self.person_key is None or self.max_rows_per_person is None:
            return None
        if measure_kind == "sum":
            clip = self.clip_of(column or "")
            return None if clip is None else self.max_rows_per_person * clip.per_row
        return self.max_rows_per_person

    @classmethod
    def parse(cls, f: Fields | None) -> DatasetBounds:
        if f is None:
            return cls()
        d = cls()
        clips = []
        clip_table = f.table("clip", None)
        if clip_table is not None:
            for column in clip_table.names():
                pair = clip_table.raw(column)
                if not (isinstance(pair, list) and len(pair) == 2
                        and all(isinstance(v, int) and not isinstance(v, bool) for v in pair)):
                    raise clip_table.error(column, "expected [low, high] integers")
                low, high = pair
                if not 0 <= low <= high:
                    raise clip_table.error(column, "expected 0 <= low <= high (sums are "
                                                   "suppressed like counts, never negative)")
                clips.append((column, Clip(low, high)))
            clip_table.done()
        bounds = cls(
            person_key=f.str("person_key", None),
            max_rows_per_person=f.int("max_rows_per_person", None, minimum=1),
            max_persons=f.int("max_persons", None, minimum=1),
            filter_columns=f.str_list("filter_columns", ()),
            window_columns=f.str_list("window_columns", ()),
            min_window_days=f.int("min_window_days", d.min_window_days, minimum=1),
            clip=tuple(clips),
            max_epsilon=f.float("max_epsilon", None),
            epsilon_budget=f.float("epsilon_budget", 0.0),
            delta_budget=f.float("delta_budget", 0.0),
            ledger=f.bool("ledger", True),
        )
        f.done()
        if bounds.max_persons is not None and bounds.max_persons > MAX_LIST_BOUND:
            raise f.error("max_persons", f"at most {MAX_LIST_BOUND:,}")
        if bounds.person_key is not None and bounds.person_key in bounds.filter_columns:
            raise f.error("filter_columns", "the person key is never a filter column: a "
                                            "filter on it would single out persons")
        if bounds.max_epsilon is not None and bounds.max_epsilon <= 0:
            raise f.error("max_epsilon", "must be positive")
        for name in ("epsilon_budget", "delta_budget"):
            if getattr(bounds, name) < 0:
                raise f.error(name, "must not be negative")
        if bounds.delta_budget >= 1:
            raise f.error("delta_budget", "must be below 1")
        return bounds
