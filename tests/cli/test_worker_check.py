"""A worker checks its datasets where they live: `mpc worker --check` prints shapes and
row-count classes, never a value; a worker whose dataset cannot be opened does not start,
and says which field of party.toml to fix."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

from mpc.synth.treatments import generate_treatments
from mpc.transport.pki import make_dev_pki


def party_config(tmp_path: Path, moved: bool) -> tuple[Path, Path]:
    files = generate_treatments(tmp_path / "data", ["hospital_a"], patients_per_party=120, seed=4)
    members = make_dev_pki(tmp_path / "certs", ["hospital_a"])
    me = members["hospital_a"]
    extra = '[datasets.moved]\npath = "data/old/treatments.csv"\n' if moved else ""
    config = tmp_path / "party.toml"
    config.write_text(f"""
name = "hospital_a"
listen = "127.0.0.1:0"
[tls]
ca = "{tmp_path / 'certs' / 'ca.pem'}"
cert = "{me.cert}"
key = "{me.key}"
[signing]
key = "{me.signing_key}"
[audit]
log = "logs/hospital_a.jsonl"
[datasets.treatments]
path = "{files['hospital_a']}"
{extra}
[policy]
coordinators = ["coordinator"]
usecases = ["product-use"]
""")
    return config, files["hospital_a"]


def mpc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpc", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_check_prints_shapes_and_no_value(tmp_path: Path) -> None:
    config, data = party_config(tmp_path, moved=True)
    done = mpc("worker", "--config", str(config), "--check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ok     treatments (csv): 100-999 rows;" in done.stdout
    assert "pseudonym" in done.stdout  # column names are the schema
    assert "[datasets.moved] path" in done.stdout and "does not exist" in done.stdout
    assert "1 of 2 datasets open" in done.stdout
    with data.open() as fh:
        values = {v for row in list(csv.reader(fh))[1:] for v in row if len(v) >= 3}
    assert values and not [v for v in values if v in done.stdout + done.stderr]


def test_check_of_a_sound_config_exits_0(tmp_path: Path) -> None:
    config, _ = party_config(tmp_path, moved=False)
    done = mpc("worker", "--config", str(config), "--check")
    assert done.returncode == 0 and "1 of 1 datasets open" in done.stdout, done.stdout


def test_a_worker_with_a_dataset_it_cannot_open_does_not_start(tmp_path: Path) -> None:
    config, _ = party_config(tmp_path, moved=True)
    done = mpc("worker", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "a dataset cannot be opened, so the worker does not start" in done.stderr
    assert f"{config} [datasets.moved] path" in done.stderr
    assert "listening" not in done.stderr + done.stdout
