"""Every use case in usecases/ on generated federation data (OMOP tables at hospitals,
claims at insurers, dispensing at pharmacies), through real processes: the release equals
an independent plaintext computation with pandas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc.config.spec import load_spec
from mpc.connectors.lines import derive_lines, line_label
from mpc.demo import PartySetup
from mpc.synth import generate_federation
from tests.conftest import Harness, start_federation
from tests.helpers import plaintext_release_frames

ALL = sorted((Path(__file__).resolve().parents[2] / "usecases").glob("*.toml"))
USECASES = [u for u in ALL if load_spec(u).kind == "aggregate" and load_spec(u).noise is None]
NOISY = [u for u in ALL if load_spec(u).noise is not None]
LINKED = [u for u in ALL if load_spec(u).kind != "aggregate"]  # exact checks: test_linkage


def treatments_from_omop(folder: Path) -> pd.DataFrame:
    """The treatments view, rebuilt in pandas: one row per patient, product and line."""
    read = lambda t: pd.read_csv(folder / f"{t}.csv")  # noqa: E731
    exposures = read("drug_exposure")
    for column in ("drug_exposure_start_date", "drug_exposure_end_date"):
        exposures[column] = pd.to_datetime(exposures[column])
    if (folder / "episode.csv").exists():
        episodes = read("episode")
        merged = exposures.merge(episodes, on="person_id")
        within = (merged.drug_exposure_start_date >= pd.to_datetime(merged.episode_start_date)) \
            & (merged.drug_exposure_start_date <= pd.to_datetime(merged.episode_end_date))
        lines = merged[within][["drug_exposure_id", "episode_number"]].rename(
            columns={"episode_number": "line"})
    else:
        derived = derive_lines(exposures.rename(columns={
            "drug_source_value": "drug", "drug_exposure_start_date": "start_date",
            "drug_exposure_end_date": "end_date"}))
        lines = derived[["drug_exposure_id", "line"]]
    conditions = read("condition_occurrence").sort_values("condition_start_date") \
        .drop_duplicates("person_id")[["person_id", "condition_source_value"]]
    rows = exposures.merge(lines, on="drug_exposure_id") \
        .merge(read("person")[["person_id", "person_source_value"]], on="person_id") \
        .merge(conditions, on="person_id", how="left")
    rows["line"] = rows["line"].map(line_label)
    return rows.rename(columns={"person_source_value": "pseudonym",
                                "drug_source_value": "product",
                                "condition_source_value": "indication"}) \
        .drop_duplicates(["pseudonym", "product", "indication", "line"])


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, dict]]:
    root = tmp_path_factory.mktemp("usecases")
    data = generate_federation(root / "data", patients=2500, seed=19)
    names = [load_spec(u).name for u in ALL]
    setups = {h: PartySetup({"treatments": {"omop": str(f)}}, names,
                            budget={"treatments": 5.0})
              for h, f in data.hospitals.items()}
    setups |= {i: PartySetup({"claims": {"path": str(f)}}, names)
               for i, f in data.insurers.items()}
    setups |= {p: PartySetup({"dispensing": {"path": str(f)}}, names)
               for p, f in data.pharmacies.items()}
    frames = {h: treatments_from_omop(f) for h, f in data.hospitals.items()}
    frames |= {p: pd.read_csv(f, dtype=str).assign(packs=lambda d: d.packs.astype(int))
               for p, f in data.pharmacies.items()}
    frames |= {i: pd.read_csv(f, dtype=str) for i, f in data.insurers.items()}
    fed = start_federation(root / "fed", {}, [], setups=setups)
    try:
        yield Harness(fed, {}), frames
    finally:
        fed.stop()


@pytest.mark.parametrize("usecase", USECASES, ids=lambda p: p.stem)
def test_usecase_release_equals_plaintext(federation: tuple[Harness, dict],
                                          usecase: Path) -> None:
    harness, frames = federation
    spec = load_spec(usecase)
    outcome = harness.run(spec.text)
    assert outcome.table is not None
    keep, value, total = plaintext_release_frames(frames, spec, outcome.rules)
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)
    assert total.sum() > 0


@pytest.mark.parametrize("usecase", NOISY, ids=lambda p: p.stem)
def test_noisy_usecase_is_close_to_the_truth(federation: tuple[Harness, dict],
                                             usecase: Path) -> None:
    harness, frames = federation
    spec = load_spec(usecase)
    outcome = harness.run(spec.text)
    table = outcome.table
    assert table is not None and table.interval is not None
    _, _, total = plaintext_release_frames(frames, spec, outcome.rules)
    error = np.abs(table.value[table.keep] - total[table.keep])
    assert (error <= 10 * table.interval).all()  # the noise is small against the counts
    assert (table.value[table.keep] >= outcome.rules.min_cell).all()
    assert (error > 0).any(), "no noise was added"


@pytest.mark.parametrize("usecase", LINKED, ids=lambda p: p.stem)
def test_linkage_and_overlap_usecases_run(federation: tuple[Harness, dict],
                                          usecase: Path) -> None:
    harness, _ = federation
    spec = load_spec(usecase)
    outcome = harness.run(spec.text)
    assert outcome.table is not None
    scalar = outcome.table.scalar()
    assert scalar is not None and scalar["value"] > 0
