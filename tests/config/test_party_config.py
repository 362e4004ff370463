from __future__ import annotations

import re
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


# --- CSV options of a dataset ------------------------------------------------------------

CSV_PATH = 'path = "data/treatments.csv"'


def with_csv(options: str, dataset: str = CSV_PATH) -> str:
    return BASE.replace(CSV_PATH, dataset + "\n" + options)


def test_csv_options_are_read(tmp_path: Path) -> None:
    options = 'encoding = "CP1252"\ndelimiter = ";"\ndecimal = ","'
    ds = load_party_config(write(tmp_path, with_csv(options))).datasets["treatments"]
    assert (ds.encoding, ds.delimiter, ds.decimal, ds.header) == ("windows-1252", ";", ",", True)
    tab = load_party_config(write(tmp_path, with_csv('delimiter = "\\t"\nheader = false\n'
                                                     'columns = ["a", "b"]')))
    ds = tab.datasets["treatments"]
    assert (ds.delimiter, ds.header, ds.columns) == ("\t", False, ("a", "b"))
    word = load_party_config(write(tmp_path, with_csv('delimiter = "tab"')))
    assert word.datasets["treatments"].delimiter == "\t"
    for spelling, name in [("utf8", "utf-8"), ("ISO-8859-1", "latin-1"), ("latin1", "latin-1"),
                           ("utf-16", "utf-16"), ("windows-1252", "windows-1252")]:
        cfg = load_party_config(write(tmp_path, with_csv(f'encoding = "{spelling}"')))
        assert cfg.datasets["treatments"].encoding == name


def test_definition_of_a_csv_dataset(tmp_path: Path) -> None:
    """What a party commits to: unchanged for a dataset that sets no option (or only the
    defaults), and naming the options otherwise."""
    plain = load_party_config(write(tmp_path, BASE)).datasets["treatments"]
    assert plain.definition() == str(tmp_path / "data/treatments.csv")
    defaults = with_csv('encoding = "utf-8"\ndecimal = "."\nheader = true')
    assert load_party_config(write(tmp_path, defaults)).datasets["treatments"].definition() \
        == plain.definition()
    dutch = with_csv('encoding = "cp1252"\ndelimiter = ";"\ndecimal = ","')
    assert load_party_config(write(tmp_path, dutch)).datasets["treatments"].definition() == (
        f'{plain.definition()} encoding="windows-1252" delimiter=";" decimal=","')
    bare = with_csv('header = false\ncolumns = ["a", "b"]')
    assert load_party_config(write(tmp_path, bare)).datasets["treatments"].definition() == (
        f'{plain.definition()} header=false columns=["a", "b"]')


@pytest.mark.parametrize("options,message", [
    ('encoding = "ebcdic"', "datasets.treatments.encoding: expected one of utf-8, windows-1252"),
    ('encoding = 1252', "datasets.treatments.encoding: expected a string"),
    ('delimiter = ";;"', "datasets.treatments.delimiter: expected one of"),
    ('delimiter = ""', "datasets.treatments.delimiter: expected one of"),
    ('delimiter = 59', "datasets.treatments.delimiter: expected one of"),
    ('decimal = "·"', "datasets.treatments.decimal: expected"),
    ('decimal = ","', "datasets.treatments.decimal: decimal = \",\" needs a delimiter other"),
    ('decimal = ","\ndelimiter = ","', "datasets.treatments.decimal: decimal = \",\" needs"),
    ('header = "no"', "datasets.treatments.header: expected true or false"),
    ('header = false', "datasets.treatments.columns: header = false needs columns"),
    ('columns = ["a", "b"]', "datasets.treatments.columns: columns is only for header = false"),
    ('header = false\ncolumns = ["a", "a"]', "datasets.treatments.columns: duplicate entries"),
    ('header = false\ncolumns = []', "datasets.treatments.columns: must not be empty"),
    ('delimter = ";"', "datasets.treatments.delimter: unknown field"),
])
def test_bad_csv_options(tmp_path: Path, options: str, message: str) -> None:
    path = write(tmp_path, with_csv(options))
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        load_party_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("dataset", [
    'path = "data/treatments.parquet"', 'omop = "data/omop"',
    'url = "sqlite:///data/w.db"\nquery = "SELECT * FROM t"'])
@pytest.mark.parametrize("option", ['encoding = "cp1252"', 'delimiter = ";"', 'decimal = "."',
                                    'header = true', 'columns = ["a"]'])
def test_csv_options_are_refused_for_other_datasets(tmp_path: Path, dataset: str,
                                                    option: str) -> None:
    key = option.split(" ")[0]
    with pytest.raises(ConfigError, match=re.escape(
            f"datasets.treatments.{key}: {key} is only for CSV files")):
        load_party_config(write(tmp_path, with_csv(option, dataset)))
