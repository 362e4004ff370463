"""Treatment lines derived from drug exposures, for sources without recorded lines.

The rule, per person:

1. Sort the person's exposures by start date; ties by drug name, then input order.
2. The first exposure starts line 1. A line's *regimen* is the set of drugs started within
   REGIMEN_WINDOW_DAYS (30) of the line's first start, that day counted inclusive.
3. A later exposure starts a new line when
   a. its drug is not in the current regimen and it starts more than REGIMEN_WINDOW_DAYS
      after the line's first start (a drug added or switched to after the window), or
   b. it starts more than GAP_DAYS (90) after the latest end date of the person's earlier
      exposures (a treatment gap), even with the same drugs. A gap of exactly 90 days
      continues the line.
   Otherwise it continues the current line: a drug already in the regimen, or a new drug
   inside the window, which joins the regimen.
4. A new line's regimen is again every drug started within the window of its first exposure.

A missing end date counts as the start date (a single administration); an end before its
start is taken as the start. Lines are numbered 1, 2, 3, ...; line_label folds them into the
reporting categories "1", "2" and "3+".
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GAP_DAYS = 90
REGIMEN_WINDOW_DAYS = 30
COLUMNS = ("person_id", "drug", "start_date", "end_date")


def line_label(n: int) -> str:
    """The reporting category of line n: "1", "2" or "3+"."""
    if n < 1:
        raise ValueError(f"treatment lines start at 1, got {n}")
    return "3+" if n >= 3 else str(int(n))


def _days(column: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Days since 1970-01-01 as int64, and the mask of missing values."""
    try:
        stamps = pd.to_datetime(column)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column {name!r} holds a value that is not a date: {exc}") from None
    missing = stamps.isna().to_numpy()
    days = stamps.to_numpy().astype("datetime64[D]").astype(np.int64)
    return days, missing


def derive_lines(exposures: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of `exposures` with an int64 column `line` (see the module docstring).

    Needs columns person_id, drug, start_date and end_date (datetime64, date objects or ISO
    strings; end_date may be null). Rows keep their order and index; an existing `line`
    column is replaced.
    """
    missing_cols = [c for c in COLUMNS if c not in exposures.columns]
    if missing_cols:
        raise ValueError(f"exposures lack column(s) {', '.join(missing_cols)}")
    out = exposures.copy()
    n = len(out)
    if n == 0:
        out["line"] = np.zeros(0, dtype=np.int64)
        return out

    persons, _ = pd.factorize(out["person_id"])
    if (persons < 0).any():
        raise ValueError("column 'person_id' has missing values")
    # sort=True numbers drugs in name order, so sorting codes breaks ties by name.
    drugs, _ = pd.factorize(out["drug"], sort=True)
    if (drugs < 0).any():
        raise ValueError("column 'drug' has missing values")
    start, no_start = _days(out["start_date"], "start_date")
    if no_start.any():
        raise ValueError("column 'start_date' has missing values")
    end, no_end = _days(out["end_date"], "end_date")
    end = np.where(no_end, start, np.maximum(end, start))

    order = np.lexsort((drugs, start, persons))  # stable: equal keys keep input order
    lines = _number_lines(persons[order].tolist(), drugs[order].tolist(),
                          start[order].tolist(), end[order].tolist())
    result = np.empty(n, dtype=np.int64)
    result[order] = lines
    out["line"] = result
    return out


def _number_lines(persons: list[int], drugs: list[int], starts: list[int],
                  ends: list[int]) -> list[int]:
    """The sequential core on sorted plain lists; lists beat numpy scalars in a Python loop."""
    lines = [0] * len(persons)
    person = -1
    line = first_start = latest_end = 0
    regimen: set[int] = set()
    for i, (p, d, s, e) in enumerate(zip(persons, drugs, starts, ends, strict=True)):
        if p != person:
            person, line, first_start, latest_end, regimen = p, 1, s, e, {d}
        else:
            if s - latest_end > GAP_DAYS:
                line, first_start, regimen = line + 1, s, {d}
            elif d not in regimen:
                if s - first_start <= REGIMEN_WINDOW_DAYS:
                    regimen.add(d)
                else:
                    line, first_start, regimen = line + 1, s, {d}
            if e > latest_end:
                latest_end = e
        lines[i] = line
    return lines
