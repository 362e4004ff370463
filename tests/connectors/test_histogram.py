"""The local histogram of a distribution job, counted in each engine (DuckDB for files,
SQLite and a real PostgreSQL server), against numpy on the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc.config.spec import parse_spec
from mpc.connectors import TableRequest
from mpc.connectors.histogram import HistogramRequest, compute_local_histogram
from mpc.errors import DataError
from tests.connectors.test_table import writer  # noqa: F401  (the engines fixture)
from tests.helpers import bin_of

EDGES = (0, 30, 90, 180)
SPEC = b"""
name = "d"
kind = "distribution"
parties = ["hospital_a", "hospital_b"]
[input]
dataset = "treatments"
[distribution]
group_by = ["product"]
measure = "days"
censor = "ongoing"
bins = [0, 30, 90, 180]
[categories]
product = ["p", "q"]
"""


def frame(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 200
    return pd.DataFrame({
        "pseudonym": [f"x{i}" for i in rng.integers(0, 120, n)],
        "product": rng.choice(["p", "q", "other"], n),
        "days": rng.integers(-5, 400, n),
        "ongoing": rng.choice([True, False], n),
    })


def expected(df: pd.DataFrame) -> np.ndarray:
    out = np.zeros((2, len(EDGES), 2), dtype=np.int64)
    for product, days, ongoing in df[["product", "days", "ongoing"]].itertuples(index=False):
        if product in ("p", "q") and pd.notna(days) and pd.notna(ongoing):
            out[("p", "q").index(product), bin_of(int(days), EDGES), int(bool(ongoing))] += 1
    return out


def request(spec_bytes: bytes = SPEC, **bounds: object) -> HistogramRequest:
    from mpc.config.bounds import DatasetBounds

    spec = parse_spec(spec_bytes)
    job = spec.job
    table = TableRequest.from_spec(spec, "hospital_a", DatasetBounds(**bounds))  # type: ignore[arg-type]
    return HistogramRequest.of(table, job.column, job.edges, job.censor)  # type: ignore[attr-defined]


def test_histogram_matches_numpy(tmp_path: Path, writer) -> None:  # noqa: ANN001, F811
    df = frame()
    got = compute_local_histogram(writer(tmp_path, df), request())
    np.testing.assert_array_equal(got, expected(df))
    assert got[:, :, 1].sum() > 0 and got[:, 0].sum() > 0  # censored rows; values below 0


def test_rows_without_a_measure_or_flag_are_left_out(tmp_path: Path, writer  # noqa: F811
                                                     ) -> None:  # noqa: ANN001
    df = frame()
    df["days"] = df["days"].astype("float")
    df.loc[:9, "days"] = np.nan
    df["ongoing"] = df["ongoing"].astype("object")
    df.loc[10:19, "ongoing"] = None
    got = compute_local_histogram(writer(tmp_path, df), request())
    np.testing.assert_array_equal(got, expected(df))


def test_without_censoring_every_row_is_an_event(tmp_path: Path, writer  # noqa: F811
                                                 ) -> None:  # noqa: ANN001
    df = frame()
    got = compute_local_histogram(writer(tmp_path, df),
                                  request(SPEC.replace(b'censor = "ongoing"\n', b"")))
    assert got[:, :, 1].sum() == 0
    np.testing.assert_array_equal(got[:, :, 0], expected(df).sum(2))


def test_contribution_bound_applies(tmp_path: Path) -> None:
    from tests.connectors.test_table import write_csv

    df = frame()
    got = compute_local_histogram(write_csv(tmp_path, df),
                                  request(person_key="pseudonym", max_rows_per_person=1))
    fitting = df[df["product"].isin(["p", "q"])]
    assert got.sum() == fitting["pseudonym"].nunique() < len(fitting)


def test_a_text_measure_is_refused_without_a_value(tmp_path: Path) -> None:
    from tests.connectors.test_table import write_csv

    df = frame().astype({"days": str})
    df.loc[0, "days"] = "secret-value-42"
    with pytest.raises(DataError) as err:
        compute_local_histogram(write_csv(tmp_path, df), request())
    assert "must be a numeric column" in str(err.value) and "'days'" in str(err.value)
    assert "secret-value-42" not in str(err.value)
