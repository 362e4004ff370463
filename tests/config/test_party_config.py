from __future__ import annotations

from pathlib import Path

import pytest

from mpc.config.party import load_party_config
from mpc.errors import ConfigError, PolicyRefused
from mpc.worker.policy import approve
from tests.helpers import spec_text

BASE = """
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
path = "data/treatments.csv"
[datasets.warehouse]
url = "postgresql+psycopg://reader@db/oncology"
query = "SELECT * FROM treatments"
[policy]
coordinators = ["coordinator"]
usecases = ["product-use"]
min_cell_floor = 15
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "party.toml"
    path.write_text(text)
    return path


def test_party_config_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    cfg = load_party_config(write(tmp_path, BASE))
    assert cfg.tls.cert == tmp_path / "certs/hospital_a.pem"
    assert cfg.datasets["treatments"].format == "csv"
    assert cfg.datasets["warehouse"].format == "sql"
    assert cfg.policy.min_cell_floor == 15 and cfg.peer_host == "127.0.0.1"


@pytest.mark.parametrize("edit,message", [
    (('listen = "127.0.0.1:7001"', 'listen = "nowhere"'), "listen: expected host:port"),
    (('path = "data/treatments.csv"', 'path = "data/t.xlsx"'), "datasets.treatments.path"),
    (('query = "SELECT * FROM treatments"', ''), "datasets.warehouse.query"),
    (('min_cell_floor = 15', 'min_cell_floor = "15"'), "policy.min_cell_floor: expected an"),
    (('[policy]', '[policy]\nusecase = ["x"]'), "policy.usecase: unknown field"),
])
def test_bad_party_configs_name_file_and_field(tmp_path: Path, edit: tuple[str, str],
                                               message: str) -> None:
    path = write(tmp_path, BASE.replace(*edit))
    with pytest.raises(ConfigError, match=message) as err:
        load_party_config(path)
    assert str(path) in str(err.value)


def test_policy_decisions(tmp_path: Path) -> None:
    cfg = load_party_config(write(tmp_path, BASE))
    spec = spec_text("product-use", ["hospital_a", "hospital_b"])
    assert approve(cfg, spec, "coordinator").name == "product-use"
    with pytest.raises(PolicyRefused, match="coordinator 'mallory' is not allowed"):
        approve(cfg, spec, "mallory")
    with pytest.raises(PolicyRefused, match="use case 'other' is not allowed"):
        approve(cfg, spec_text("other", ["hospital_a", "hospital_b"]), "coordinator")
    with pytest.raises(PolicyRefused, match="not one of the use case's parties"):
        approve(cfg, spec_text("product-use", ["hospital_b", "hospital_c"]), "coordinator")


def test_a_pinned_spec_that_changed_is_refused(tmp_path: Path) -> None:
    spec = spec_text("product-use", ["hospital_a", "hospital_b"])
    import hashlib

    pinned = BASE + f'[policy.pinned]\n"product-use" = "{hashlib.sha256(spec).hexdigest()}"\n'
    cfg = load_party_config(write(tmp_path, pinned))
    assert approve(cfg, spec, "coordinator")
    changed = spec.replace(b"min_cell = 10", b"min_cell = 11")
    with pytest.raises(PolicyRefused, match="is pinned to SHA-256"):
        approve(cfg, changed, "coordinator")
