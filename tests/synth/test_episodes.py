"""Generated treatment durations, read through the OMOP connector's `treatment_episodes`
view: medians per product and line as in the pivotal trials, some episodes censored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc.config.party import DatasetConfig
from mpc.config.rules import Measure
from mpc.connectors import TableRequest
from mpc.connectors.engines import open_source
from mpc.synth import generate_federation

MONTH = 30.44


def km_median(days: pd.Series, censored: pd.Series) -> float:
    """The Kaplan-Meier median in months (inf when the curve stays above one half)."""
    t, event = days.to_numpy(), ~censored.to_numpy(dtype=bool)
    survival = 1.0
    for time in np.unique(t):
        at_risk = (t >= time).sum()
        survival *= 1 - ((t == time) & event).sum() / at_risk
        if survival <= 0.5:
            return float(time) / MONTH
    return float("inf")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_federation(tmp_path_factory.mktemp("fed")).hospitals  # the demo's data


@pytest.fixture(scope="module")
def episodes(generated: dict[str, Path]) -> pd.DataFrame:
    frames = []
    for party, folder in generated.items():
        config = DatasetConfig(name="treatment_episodes", omop=folder)
        request = TableRequest(party=party, dataset=config.name, group_by=(), categories=(),
                               measure=Measure("count"))
        with open_source(config, request) as source:
            frames.append(pd.DataFrame(
                source.run(f"SELECT * FROM {source.relation}"), columns=source.columns
            ).assign(hospital=party))
    return pd.concat(frames, ignore_index=True)


def test_medians_per_product_and_line_are_plausible(episodes: pd.DataFrame) -> None:
    def median(product: str, line: str, indication: str | None = None) -> float:
        rows = episodes[(episodes["product"] == product) & (episodes["line"] == line)]
        if indication is not None:
            rows = rows[rows["indication"] == indication]
        assert len(rows) >= 40, (product, line, indication)
        return km_median(rows["duration_days"], rows["censored"])

    osimertinib = [median("osimertinib", line) for line in ("1", "2", "3+")]
    assert 14 <= osimertinib[0] <= 24  # FLAURA-like
    assert 7 <= osimertinib[1] < osimertinib[0] and 4 <= osimertinib[2] < osimertinib[1]
    consolidation = median("durvalumab", "1", "NSCLC")
    assert 8 <= consolidation <= 12  # PACIFIC-like, a year at most ...
    nsclc = episodes[(episodes["product"] == "durvalumab") & (episodes["indication"] == "NSCLC")]
    assert nsclc["duration_days"].max() <= 366
    assert (nsclc["duration_days"] >= 330).mean() > 0.1  # ... which many complete
    assert 4 <= median("durvalumab", "1", "SCLC") < consolidation  # extensive stage
    assert 12 <= median("olaparib", "1", "ovarian") <= 20  # maintenance
    assert median("olaparib", "1", "prostate") < median("olaparib", "1", "ovarian")


def test_some_but_not_all_episodes_are_censored(episodes: pd.DataFrame) -> None:
    assert 0.15 < episodes["censored"].mean() < 0.6
    assert 0.5 < episodes["next_treatment_censored"].mean() < 0.95
    for _, cell in episodes.groupby(["product", "line"]):
        assert cell["censored"].any() and not cell["censored"].all()
    # A line with a next line ended: never censored, and the next line starts after it.
    followed = episodes[~episodes["next_treatment_censored"]]
    assert not followed["censored"].any()
    assert (followed["time_to_next_treatment_days"] >= followed["duration_days"]).all()
    assert (episodes["time_to_next_treatment_days"] >= 0).all()
    assert (episodes["duration_days"] >= 1).all()
    # Still on the last line a month before the data cut-off: censored.
    last = episodes[episodes["next_treatment_censored"]]
    ongoing = last[pd.to_datetime(last["end_date"]) >= pd.Timestamp("2024-11-30")]
    assert len(ongoing) > 100 and ongoing["censored"].all()


def test_observation_periods(generated: dict[str, Path]) -> None:
    for folder in generated.values():
        period = pd.read_csv(folder / "observation_period.csv",
                             parse_dates=["observation_period_start_date",
                                          "observation_period_end_date"])
        person = pd.read_csv(folder / "person.csv")
        exposure = pd.read_csv(folder / "drug_exposure.csv",
                               parse_dates=["drug_exposure_start_date"])
        assert period["person_id"].is_unique
        assert set(period["person_id"]) == set(person["person_id"])
        seen = exposure.groupby("person_id")["drug_exposure_start_date"].agg(["min", "max"])
        joined = period.set_index("person_id").join(seen)
        assert (joined["observation_period_start_date"] <= joined["min"]).all()
        assert (joined["observation_period_end_date"] >= joined["max"]).all()
        end = joined["observation_period_end_date"]
        assert end.max() == pd.Timestamp("2024-12-31")
        assert 0.6 < (end == pd.Timestamp("2024-12-31")).mean() < 0.9  # most to the cut-off
        assert (period["period_type_concept_id"] == 32817).all()
