"""Overlap jobs used to ignore `[input] window` and `filter` (recorded in the ledger, never
applied): the released counts now follow the scope, as pandas computes them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.redteam.conftest import HOSPITALS, Worlds, spec_text


def test_overlap_counts_only_persons_in_the_window_and_filter(worlds: Worlds) -> None:
    parties = HOSPITALS[:3]
    frames = worlds.frames()
    rng = np.random.default_rng(3)
    for df in frames.values():
        df["start_date"] = pd.Timestamp("2023-06-01") + pd.to_timedelta(
            rng.integers(0, 500, len(df)), unit="D")
        df["start_date"] = df.start_date.dt.strftime("%Y-%m-%d")
    spec = spec_text("attack-38", "d0", parties=parties, kind="overlap", min_cell=1,
                     input_extra='window = { column = "start_date", from = 2024-01-01, '
                                 'to = 2024-07-01 }\nfilter = { indication = ["NSCLC"] }',
                     table_extra='key = "pseudonym"\npad_to = 400')
    view = worlds.view("d0", frames, spec)
    in_scope = [df[(df.start_date >= "2024-01-01") & (df.start_date < "2024-07-01")
                   & (df.indication == "NSCLC")].pseudonym.drop_duplicates()
                for df in (frames[p] for p in parties)]
    seen = pd.concat(in_scope).value_counts()
    everyone = pd.concat([frames[p].pseudonym for p in parties]).nunique()
    assert 0 < len(seen) < everyone
    hist = seen.value_counts().reindex(range(1, 4), fill_value=0).to_numpy()
    want = np.append(hist, len(seen))
    assert view.status == "released" and all(view.keep)  # min_cell 1: every count shows
    assert view.values == tuple(int(v) for v in want)
