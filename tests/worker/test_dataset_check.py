"""A party's datasets checked where they live: what opens gives its shape (columns, a
row-count class), what does not names party.toml's field, and no value of the data shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpc.config.party import load_party_config
from mpc.synth.treatments import generate_treatments
from mpc.worker.dataset_check import check_datasets, row_class

CONFIG = """
name = "hospital_a"
listen = "127.0.0.1:7001"
[tls]
ca = "certs/ca.pem"
cert = "certs/hospital_a.pem"
key = "certs/hospital_a.key"
[signing]
key = "certs/hospital_a.sign.key"
[audit]
log = "logs/hospital_a.jsonl"
[datasets.treatments]
path = "data/hospital_a/treatments.csv"
[datasets.moved]
path = "data/old/treatments.csv"
[datasets.latin]
path = "data/latin.csv"
[datasets.tables]
omop = "data/no-such-omop"
[datasets.warehouse]
url = "postgresql+psycopg://reader@db.invalid/oncology"
query = "SELECT * FROM treatments"
[policy]
coordinators = ["coordinator"]
usecases = ["product-use"]
"""
SENTINEL = "ZQX123"


@pytest.fixture()
def party(tmp_path: Path) -> Path:
    generate_treatments(tmp_path / "data", ["hospital_a"], patients_per_party=150, seed=2)
    (tmp_path / "data" / "latin.csv").write_bytes(
        f"pseudonym,place\np1,Curaçao {SENTINEL}\n".encode("cp1252"))
    path = tmp_path / "party.toml"
    path.write_text(CONFIG)
    return path


def test_shapes_and_problems_of_every_dataset(party: Path) -> None:
    shapes, errors = check_datasets(load_party_config(party), dry_run=True)
    by_name = {s.name: s for s in shapes}
    assert set(by_name) == {"treatments"}
    good = by_name["treatments"]
    assert good.kind == "csv" and {"pseudonym", "product", "line"} <= set(good.columns)
    assert good.rows is not None and good.rows.endswith(" rows") and "-" in good.rows
    messages = {e.dataset: str(e) for e in errors}
    assert set(messages) == {"moved", "latin", "tables", "warehouse"}
    assert "[datasets.moved] path" in messages["moved"] and "does not exist" in messages["moved"]
    assert str(party) in messages["moved"]
    assert "[datasets.tables] omop" in messages["tables"]
    assert "not valid UTF-8" in messages["latin"] and "set encoding" in messages["latin"]
    assert "[datasets.latin] path" in messages["latin"]
    assert "[datasets.warehouse] url and query" in messages["warehouse"]
    for text in messages.values():
        assert SENTINEL not in text and "Cura" not in text


def test_at_start_a_database_is_not_dialled(party: Path) -> None:
    # A database that is down for a while must not stop the worker: each job checks it.
    shapes, errors = check_datasets(load_party_config(party))
    assert {s.name for s in shapes} == {"treatments"} and all(s.rows is None for s in shapes)
    assert {e.dataset for e in errors} == {"moved", "latin", "tables"}


@pytest.mark.parametrize("rows,words", [(0, "no rows"), (7, "1-9 rows"), (10, "10-99 rows"),
                                        (999, "100-999 rows"), (12_345, "10,000-99,999 rows")])
def test_row_classes(rows: int, words: str) -> None:
    assert row_class(rows) == words
