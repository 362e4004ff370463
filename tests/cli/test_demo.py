"""The README's first command, and the same on a user's own files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc.config.spec import parse_spec
from mpc.synth import generate_treatments
from tests.helpers import plaintext_release, spec_text

pytestmark = pytest.mark.integration  # `mpc demo` runs a federation of processes


def mpc(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpc", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_runs_the_oncology_use_case(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = mpc("demo", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "oncology-product-use" in proc.stdout and "suppressed" in proc.stdout
    rows = list(csv.DictReader((out / "oncology-product-use" / "result.csv").open()))
    assert len(rows) == 45
    assert list(rows[0]) == ["product", "indication", "line", "value", "suppressed"]
    assert any(r["suppressed"] == "true" and r["value"] == "" for r in rows)
    result = json.loads((out / "oncology-product-use" / "result.json").read_text())
    assert result["parties"] == ["hospital_a", "hospital_b", "hospital_c"]
    assert len(result["spec_sha256"]) == 64
    assert (out / "federation.toml").exists()
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "coordinator.jsonl", "dealer.jsonl", "hospital_a.jsonl", "hospital_b.jsonl",
        "hospital_c.jsonl"]
    assert "Audit of 5 signed logs: PASS" in proc.stdout
    # An auditor's own run over the same files gives the same verdict.
    audit = mpc("audit", "verify", "--federation", str(out / "federation.toml"),
                *sorted(str(p) for p in (out / "logs").iterdir()))
    assert audit.returncode == 0 and "Verdict: PASS" in audit.stdout


def test_demo_on_the_users_own_files(tmp_path: Path) -> None:
    parties = ["clinic_x", "clinic_y"]
    data = tmp_path / "mine"
    files = generate_treatments(data, parties, patients_per_party=300, seed=2)
    # clinic_y exports Parquet instead of CSV
    pd.read_csv(files["clinic_y"], dtype=str).assign(
        cycles=lambda d: d.cycles.astype("int64")).to_parquet(data / "clinic_y" /
                                                              "treatments.parquet")
    files["clinic_y"].unlink()
    spec_path = tmp_path / "cycles.toml"
    text = spec_text("cycles-by-product", parties, measure="sum:cycles",
                     group_by=["product", "line"], min_cell=20, min_contributors=2,
                     categories={"product": ["osimertinib", "durvalumab", "olaparib"],
                                 "line": ["1", "2", "3+"]})
    spec_path.write_bytes(text)
    out = tmp_path / "out"
    # A sum needs the parties' clipping range for the column.
    proc = mpc("demo", "--data", str(data), "--usecase", str(spec_path), "--out", str(out))
    assert proc.returncode == 1 and "no clipping range for summed column 'cycles'" in \
        " ".join(proc.stdout.split())
    bounds = tmp_path / "bounds.toml"
    bounds.write_text("[treatments]\nclip = { cycles = [0, 1000] }\n")
    proc = mpc("demo", "--data", str(data), "--usecase", str(spec_path), "--out", str(out),
               "--bounds", str(bounds))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    released = pd.read_csv(out / "cycles-by-product" / "result.csv", dtype={"line": str})
    csv_copy = tmp_path / "clinic_y.csv"
    pd.read_parquet(data / "clinic_y" / "treatments.parquet").to_csv(csv_copy, index=False)
    spec = parse_spec(text)
    result = json.loads((out / "cycles-by-product" / "result.json").read_text())
    from mpc.config.spec import DisclosureRules

    rules = DisclosureRules(**result["disclosure"])
    keep, value, _ = plaintext_release({"clinic_x": files["clinic_x"], "clinic_y": csv_copy},
                                       spec, rules)
    np.testing.assert_array_equal(~released["suppressed"].to_numpy(), keep)
    np.testing.assert_array_equal(released["value"].fillna(0).astype(int).to_numpy(), value)


def test_demo_names_a_missing_file(tmp_path: Path) -> None:
    spec_path = tmp_path / "s.toml"
    spec_path.write_bytes(spec_text("x", ["clinic_x", "clinic_y"]))
    (tmp_path / "data" / "clinic_x").mkdir(parents=True)
    proc = mpc("demo", "--data", str(tmp_path / "data"), "--usecase", str(spec_path), "--out",
               str(tmp_path / "out"))
    assert proc.returncode != 0
    assert "clinic_x" in proc.stderr + proc.stdout and "treatments" in proc.stderr + proc.stdout


def test_certs_command(tmp_path: Path) -> None:
    proc = mpc("certs", "--out", str(tmp_path), "--parties", "hospital_a,hospital_b")
    assert proc.returncode == 0, proc.stderr
    for name in ("ca", "hospital_a", "hospital_b", "dealer", "coordinator"):
        assert (tmp_path / f"{name}.pem").exists()
    assert (tmp_path / "hospital_a.sign.key").stat().st_mode & 0o077 == 0


def test_demo_with_differential_privacy(tmp_path: Path) -> None:
    out = tmp_path / "dp"
    spec = Path(__file__).resolve().parents[2] / "usecases" / "oncology-product-use-dp.toml"
    proc = mpc("demo", "--out", str(out), "--usecase", str(spec), "--patients", "2000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / "oncology-product-use-dp" / "result.json").read_text())
    noise = result["noise"]
    assert noise["mechanism"] == "discrete_laplace" and noise["epsilon"] == 1.0
    assert noise["interval_95"] >= 1
    report = (out / "oncology-product-use-dp" / "report.html").read_text()
    assert f"± {noise['interval_95']}" in report and "Differential privacy" in report
    assert "Audit of 5 signed logs: PASS" in proc.stdout


def test_demo_runs_linkage_and_overlap_on_the_users_files(tmp_path: Path) -> None:
    from mpc.synth import generate_federation

    data = tmp_path / "mine"
    generate_federation(data, patients=1200, seed=9)  # DATA/<hospital>/omop, claims.csv
    root = Path(__file__).resolve().parents[2] / "usecases"
    for usecase, scalar in (("hospital-insurer-linkage", "linked"),
                            ("patients-across-hospitals", "distinct")):
        out = tmp_path / usecase
        proc = mpc("demo", "--data", str(data), "--usecase", str(root / f"{usecase}.toml"),
                   "--out", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads((out / usecase / "result.json").read_text())
        assert result[scalar]["value"] > 0 and not result[scalar]["suppressed"]
        assert "Audit of" in proc.stdout and "PASS" in proc.stdout


def test_a_demo_that_cannot_start_stops_what_it_started(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = mpc("demo", "--out", str(out), "--patients", "300", "--start-timeout", "0.2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    said = " ".join(proc.stdout.split())
    assert "error: could not start the federation: dealer did not start listening within " \
           "0.2 s" in said and "(wait longer with --start-timeout)" in said
    # The demo has returned: none of its services (each names its config under OUT) runs.
    left = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(out).encode() in (entry / "cmdline").read_bytes():
                left.append(entry.name)
        except OSError:
            pass
    assert left == []
