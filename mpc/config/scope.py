"""Which rows a job reads: a date window, value filters, one row per person, list sizes.

The pieces every job kind's spec section is built from (mpc/kinds/), with their parsers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mpc.config.fields import Fields

Filters = tuple[tuple[str, tuple[str, ...]], ...]  # column -> the values kept
Categories = tuple[tuple[str, tuple[str, ...]], ...]  # group column -> its values, in order
MAX_PAD = 10_000_000
FIRST, LAST = "first", "last"


@dataclass(frozen=True)
class Window:
    """Rows whose `column` (a date) lies in [start, end): ISO dates, end exclusive."""

    column: str
    start: str
    end: str

    def overlaps(self, other: Window) -> bool:
        return self.column != other.column or (self.start < other.end and other.start < self.end)


@dataclass(frozen=True)
class Reduce:
    """One row per person: the first (or last) of its rows ordered by a column."""

    order_by: str
    keep: str = FIRST


def parse_pad_to(table: Fields) -> int:
    pad = table.int("pad_to", minimum=1)
    if pad > MAX_PAD:
        raise table.error("pad_to", f"at most {MAX_PAD:,}")
    return pad


def parse_reduce(table: Fields) -> Reduce | None:
    rule = table.table("reduce", None)
    if rule is None:
        return None
    reduce = Reduce(order_by=rule.str("order_by"), keep=rule.str("keep", FIRST))
    if reduce.keep not in (FIRST, LAST):
        raise rule.error("keep", f"expected 'first' or 'last', got {reduce.keep!r}")
    rule.done()
    return reduce


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


def parse_window(inp: Fields) -> Window | None:
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


def parse_filters(inp: Fields) -> Filters:
    table = inp.table("filter", None)
    if table is None:
        return ()
    filters = tuple((column, table.str_list(column, as_text=True)) for column in table.names())
    table.done()
    if not filters:
        raise inp.error("filter", "an empty filter keeps nothing: leave it out")
    return filters


def parse_input(f: Fields) -> tuple[str, Window | None, Filters]:
    """The job's `[input]` table: the dataset, and the window and filters of its rows."""
    inp = f.table("input")
    dataset, window, filters = inp.str("dataset"), parse_window(inp), parse_filters(inp)
    inp.done()
    return dataset, window, filters


def parse_categories(f: Fields, group_by: tuple[str, ...], extra: str) -> Categories:
    """The `[categories]` list of every group column, in group_by order; `extra` says what
    a column listed there should have been."""
    cat = f.table("categories")
    assert cat is not None
    categories = []
    for column in group_by:
        if not cat.has(column):
            raise cat.error(column, "every group_by column needs its list of categories")
        categories.append((column, cat.str_list(column, as_text=True)))
    others = sorted(set(cat.names()) - set(group_by))
    if others:
        raise cat.error(others[0], extra)
    return tuple(categories)


def check_filters(f: Fields, filters: Filters, group_by: tuple[str, ...]) -> None:
    """A filter on a group column would hide which categories are left out: refused."""
    for column, _ in filters:
        if column in group_by:
            raise f.error("input", f"filter: {column!r} is a group_by column: list fewer "
                                   "categories instead of filtering it")
