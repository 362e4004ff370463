"""What the commands print shows its text exactly (rich would read `[limits]` as markup and
drop it), and `mpc demo`'s limits and waits reach the configs it writes. No processes."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mpc.cli.app import app
from mpc.cli.demo import demo_federation
from mpc.config.party import DEMO_OPTIONS, load_party_config
from mpc.config.spec import parse_spec
from mpc.runner.progress import Progress
from tests.helpers import spec_text

WIDE = {"COLUMNS": "400"}  # one line per message: the assertions see it whole
USECASE = Path(__file__).resolve().parents[2] / "usecases" / "oncology-product-use.toml"


def test_a_limit_the_demo_would_hit_is_named_with_its_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--usecase", str(USECASE), "--out",
                                      str(tmp_path / "out"), "--parties-limit", "2"], env=WIDE)
    assert result.exit_code == 2
    assert result.output == (
        "error: the use case has 3 parties; the demo's parties take jobs of at most 2 "
        "([limits] max_parties in party.toml; `mpc demo --parties-limit`)\n")
    assert not (tmp_path / "out").exists()  # refused before anything was generated


def test_an_error_naming_a_path_with_brackets_is_shown_whole(tmp_path: Path) -> None:
    spec = tmp_path / "[limits] site" / "spec.toml"
    result = CliRunner().invoke(app, ["run", str(spec), "--federation", str(spec)], env=WIDE)
    assert result.exit_code == 2
    assert result.output == (f"error: {spec}: cannot read file (No such file or "
                             "directory)\n")


def test_help_shows_its_brackets() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env=WIDE)
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # help is wrapped to the terminal
    assert "a [<dataset>] table of the fields of [datasets.<name>.bounds]" in text
    assert "([limits] max_parties of the generated configs)" in text
    for option in (*DEMO_OPTIONS.values(), "--start-timeout"):  # the ones refusals name
        assert re.search(rf"{option} [A-Z]+ ", text), option


@pytest.mark.parametrize("terminal", [True, False])
def test_a_partys_message_shows_whole_in_the_progress(terminal: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=300, color_system=None)
    detail = "its limit is 16 ([limits] max_parties in party.toml)"
    with Progress(["party_04"], console=console, title="job [x]") as progress:
        progress("party_04", "failed", detail)
    assert detail in out.getvalue()
    assert "job [x]" in out.getvalue() or not terminal


def test_the_demo_writes_its_limits_and_waits_into_the_configs(tmp_path: Path) -> None:
    parties = ["clinic_x", "clinic_y"]
    for party in parties:
        (tmp_path / "data" / party).mkdir(parents=True)
        (tmp_path / "data" / party / "treatments.csv").write_text("pseudonym\n")
    spec = parse_spec(spec_text("x", parties))
    fed = demo_federation(tmp_path / "out", spec, tmp_path / "data", {}, parties_limit=40,
                          start_timeout=240.0, job_timeout=1800.0)
    assert fed.start_timeout_s == 240.0 and not fed.procs
    for party in parties:
        config = load_party_config(fed.party_config(party))
        assert config.limits.max_parties == 40
        assert config.job_timeout_s == 1800.0
    # the defaults: what a party config says without them
    fed = demo_federation(tmp_path / "out2", spec, tmp_path / "data", {}, parties_limit=16,
                          start_timeout=60.0, job_timeout=300.0)
    config = load_party_config(fed.party_config("clinic_x"))
    assert config.limits.max_parties == 16 and config.job_timeout_s == 300.0
