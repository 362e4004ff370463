"""The demo generator: reproducible, and every value inside the demo categories."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mpc.synth import INDICATIONS, LINES, PRODUCTS, generate_treatments

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    one = generate_treatments(tmp_path / "one", PARTIES, patients_per_party=300, seed=11)
    two = generate_treatments(tmp_path / "two", PARTIES, patients_per_party=300, seed=11)
    other = generate_treatments(tmp_path / "other", PARTIES, patients_per_party=300, seed=12)
    assert list(one) == PARTIES
    for party in PARTIES:
        assert one[party] == tmp_path / "one" / party / "treatments.csv"
        assert one[party].read_bytes() == two[party].read_bytes()
        assert one[party].read_bytes() != other[party].read_bytes()


def test_values_inside_demo_categories(tmp_path: Path) -> None:
    paths = generate_treatments(tmp_path, PARTIES, patients_per_party=500)
    frames = {p: pd.read_csv(path, dtype={"line": str}) for p, path in paths.items()}
    for df in frames.values():
        assert list(df.columns) == ["pseudonym", "product", "indication", "line", "cycles"]
        assert not df.isna().any().any()
        assert set(df["product"]) <= set(PRODUCTS)
        assert set(df["indication"]) <= set(INDICATIONS)
        assert set(df["line"]) <= set(LINES)
        assert df["cycles"].between(1, 30).all() and df["cycles"].dtype.kind == "i"
        assert df["pseudonym"].str.fullmatch(r"[0-9a-f]{32}").all()
        olaparib = df[df["product"] == "olaparib"]
        assert set(olaparib["indication"]) <= {"breast", "ovarian", "prostate"}

    sizes = [frames[p]["pseudonym"].nunique() for p in PARTIES]
    assert sizes[0] > sizes[1] > sizes[2]  # hospitals differ in size
    a, b = (set(frames[p]["pseudonym"]) for p in PARTIES[:2])
    assert a & b  # some patients are treated at two hospitals
    assert (frames["hospital_a"].groupby("pseudonym").size() > 1).any()  # several lines
