"""The synthetic federation: reproducible, linked by pseudonyms, inside the demo categories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mpc.cli.app import app
from mpc.synth import (
    INDICATIONS,
    MONTHS,
    PRODUCTS,
    QUARTERS,
    SynthResult,
    generate_federation,
)
from mpc.synth.omop import (
    CLAIM_COLUMNS,
    CONDITION_COLUMNS,
    DISPENSING_COLUMNS,
    DRUG_EXPOSURE_COLUMNS,
    EPISODE_COLUMNS,
    OBSERVATION_PERIOD_COLUMNS,
    PERSON_COLUMNS,
)

HOSPITALS = ("hospital_a", "hospital_b", "hospital_c")
TABLES = {"person": PERSON_COLUMNS, "condition_occurrence": CONDITION_COLUMNS,
          "drug_exposure": DRUG_EXPOSURE_COLUMNS,
          "observation_period": OBSERVATION_PERIOD_COLUMNS, "episode": EPISODE_COLUMNS}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.*"))}


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> SynthResult:
    return generate_federation(tmp_path_factory.mktemp("fed"))  # the defaults, as the demo


@pytest.fixture(scope="module")
def tables(fed: SynthResult) -> dict[str, dict[str, pd.DataFrame]]:
    return {h: {t: read(folder / f"{t}.csv") for t in TABLES if (folder / f"{t}.csv").exists()}
            for h, folder in fed.hospitals.items()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    for fmt in ("csv", "parquet"):
        one = files(generate_federation(tmp_path / fmt / "one", patients=500, seed=3,
                                        fmt=fmt).hospitals["hospital_a"].parents[1])
        two = files(generate_federation(tmp_path / fmt / "two", patients=500, seed=3,
                                        fmt=fmt).hospitals["hospital_a"].parents[1])
        other = files(generate_federation(tmp_path / fmt / "other", patients=500, seed=4,
                                          fmt=fmt).hospitals["hospital_a"].parents[1])
        assert len(one) == 3 * len(TABLES) - 1 + 2 + 2 and one == two
        assert all(name.endswith(f".{fmt}") for name in one)
        assert one.keys() == other.keys() and one != other


def test_parquet_holds_the_csv_rows(tmp_path: Path) -> None:
    csv = generate_federation(tmp_path / "c", patients=400, seed=2)
    parquet = generate_federation(tmp_path / "p", patients=400, seed=2, fmt="parquet")
    pairs = [(csv.hospitals[h] / f"{t}.csv", parquet.hospitals[h] / f"{t}.parquet")
             for h in HOSPITALS for t in TABLES if t != "episode" or h != HOSPITALS[-1]]
    pairs += [(csv.insurers[i], parquet.insurers[i]) for i in csv.insurers]
    pairs += [(csv.pharmacies[p], parquet.pharmacies[p]) for p in csv.pharmacies]
    for c, p in pairs:
        left, right = read(c), read(p)
        for col in right.columns:  # Parquet keeps DATE columns; CSV writes ISO strings
            if right[col].dtype == object and hasattr(right[col].iloc[0], "isoformat"):
                right[col] = right[col].map(lambda d: d.isoformat())
        pd.testing.assert_frame_equal(left, right, check_dtype=False)


def test_layout_and_columns(fed: SynthResult, tables: dict) -> None:
    assert list(fed.hospitals) == list(HOSPITALS)
    assert list(fed.insurers) == ["insurer_a", "insurer_b"]
    assert list(fed.pharmacies) == ["pharmacy_a", "pharmacy_b"]
    root = fed.hospitals["hospital_a"].parents[1]
    for h, folder in fed.hospitals.items():
        assert folder == root / h / "omop"
        expected = set(TABLES) - ({"episode"} if h == HOSPITALS[-1] else set())
        assert set(tables[h]) == expected  # the last hospital has no episode table
        assert not (folder / "episode.csv").exists() or h != HOSPITALS[-1]
        for name, frame in tables[h].items():
            assert tuple(frame.columns) == TABLES[name]
            assert not frame.isna().any().any()
    for i, path in fed.insurers.items():
        assert path == root / i / "claims.csv" and tuple(read(path).columns) == CLAIM_COLUMNS
    for p, path in fed.pharmacies.items():
        assert path == root / p / "dispensing.csv"
        assert tuple(read(path).columns) == DISPENSING_COLUMNS


def test_values_inside_categories(fed: SynthResult, tables: dict) -> None:
    for h in HOSPITALS:
        t = tables[h]
        assert set(t["drug_exposure"]["drug_source_value"]) == set(PRODUCTS)
        assert set(t["condition_occurrence"]["condition_source_value"]) == set(INDICATIONS)
        assert t["person"]["person_source_value"].str.fullmatch(r"[0-9a-f]{32}").all()
        assert set(t["person"]["gender_concept_id"]) <= {8507, 8532}
        if "episode" in t:
            products = t["episode"]["episode_source_value"].str.split("+").explode()
            assert set(products) <= set(PRODUCTS)
    for path in fed.insurers.values():
        claims = read(path)
        assert set(claims["product"]) <= set(PRODUCTS)
        assert set(claims["quarter"]) == set(QUARTERS)  # every quarter, none outside
        dates = pd.to_datetime(claims["claim_date"])
        assert dates.min() >= pd.Timestamp("2023-01-01")
        assert dates.max() <= pd.Timestamp("2024-12-31")
        assert (dates.dt.year.astype(str) + "Q" + dates.dt.quarter.astype(str)
                == claims["quarter"]).all()
        assert claims["amount"].between(1000, 20000).all()
    for path in fed.pharmacies.values():
        dispensing = read(path)
        assert len(dispensing) == len(MONTHS) * len(PRODUCTS)  # the full grid, zeros kept
        assert set(dispensing["month"]) == set(MONTHS)
        assert set(dispensing["product"]) == set(PRODUCTS)
        assert (dispensing["packs"] >= 0).all()


def test_hospital_tables_are_consistent(tables: dict) -> None:
    for h in HOSPITALS:
        t = tables[h]
        person, condition, exposure = t["person"], t["condition_occurrence"], t["drug_exposure"]
        ids = set(person["person_id"])
        assert person["person_id"].is_unique and person["person_source_value"].is_unique
        assert condition["person_id"].is_unique and set(condition["person_id"]) == ids
        assert set(exposure["person_id"]) == ids  # everyone here was treated here
        assert exposure["drug_exposure_id"].is_unique
        assert (exposure["drug_exposure_end_date"] >= exposure["drug_exposure_start_date"]).all()
        born = person["year_of_birth"]
        assert born.between(1925, 1999).all()
        if "episode" in t:
            episode = t["episode"]
            assert set(episode["person_id"]) == ids
            assert episode.groupby("person_id")["episode_number"].apply(
                lambda s: list(s) == list(range(s.min(), s.max() + 1))).all()
            # Episodes of a person do not overlap, so a date range join is unambiguous.
            ordered = episode.sort_values(["person_id", "episode_number"])
            nxt = ordered.groupby("person_id")["episode_start_date"].shift(-1)
            assert (nxt.isna() | (nxt > ordered["episode_end_date"])).all()


def test_pseudonyms_link_parties(fed: SynthResult, tables: dict) -> None:
    people = {h: tables[h]["person"].set_index("person_source_value")["person_id"]
              for h in HOSPITALS}
    everyone = set().union(*(set(p.index) for p in people.values()))
    assert len(everyone) == 6000
    at_two = [x for x in everyone if sum(x in p.index for p in people.values()) > 1]
    assert 0.10 <= len(at_two) / len(everyone) <= 0.15  # referrals for a later line
    for x in at_two[:50]:
        local = [int(p[x]) for p in people.values() if x in p.index]
        assert len(set(local)) == len(local)  # different local ids at each hospital
    insured = [set(read(path)["pseudonym"]) for path in fed.insurers.values()]
    assert not insured[0] & insured[1]  # one insurer per patient
    assert insured[0] | insured[1] <= everyone
    assert 0.5 < len(insured[0]) / len(insured[0] | insured[1]) < 0.7
    assert all(insured[0] & set(p.index) for p in people.values())


def test_sizes_are_plausible(fed: SynthResult, tables: dict) -> None:
    sizes = [len(tables[h]["person"]) for h in HOSPITALS]
    assert sizes[0] > sizes[1] > sizes[2] > 800  # a few thousand, one small hospital
    lines = pd.concat([tables[h]["episode"] for h in HOSPITALS[:-1]])["episode_number"]
    counts = lines.clip(upper=3).value_counts()
    assert counts[1] > 2 * counts[2] > 0 and counts[2] > 2 * counts[3] > 0
    exposures = sum(len(tables[h]["drug_exposure"]) for h in HOSPITALS)
    assert 5 * 6000 < exposures < 30 * 6000
    small = read(fed.pharmacies["pharmacy_b"])
    assert 0 < small["packs"].min() < 20  # a small pharmacy has small months


def test_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        generate_federation(tmp_path, patients=10, fmt="xlsx")
    with pytest.raises(ValueError, match="unique"):
        generate_federation(tmp_path, patients=10, insurers=("hospital_a",))
    with pytest.raises(ValueError, match="folder"):
        generate_federation(tmp_path, patients=10, pharmacies=("../x",))
    with pytest.raises(ValueError, match="patients"):
        generate_federation(tmp_path, patients=0)
    tiny = generate_federation(tmp_path / "tiny", patients=1, insurers=(), pharmacies=())
    assert tiny.insurers == {} and tiny.pharmacies == {}
    assert sum(len(read(f / "person.csv")) for f in tiny.hospitals.values()) == 1


def test_cli_writes_every_party(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--patients", "300",
                                      "--seed", "1", "--format", "parquet"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        *HOSPITALS, "insurer_a", "insurer_b", "pharmacy_a", "pharmacy_b"]
    assert (tmp_path / "hospital_a" / "omop" / "episode.parquet").exists()
    assert (tmp_path / "insurer_b" / "claims.parquet").exists()
    bad = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--format", "xlsx"])
    assert bad.exit_code != 0
