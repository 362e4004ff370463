"""Every command's --help names what a value is (SPEC, FILE, N, SECONDS), never a Python
type, and ends with an example that is a real command line; `mpc --version` prints the
installed package's version."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from mpc.cli.app import DISTRIBUTION, app

ROOT = Path(__file__).resolve().parents[2]
WIDE = {"COLUMNS": "200"}  # an example wider than the terminal would not show it anyway
# What typer writes for a value's Python type: `<bool>`, `<int range>`, `<list[Path]>`.
PYTHON_TYPE = re.compile(r"<(?:bool|int|float|str|path|file|dir|uuid|datetime|[a-z]+ range"
                         r"|list\[[^>]*\])>|list\[|\[Path|\[str|\[int")


def commands(command: Any, words: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The words of every command and group under `command`: new ones are checked too."""
    found = [words]
    for name, sub in getattr(command, "commands", {}).items():
        found += commands(sub, (*words, name))
    return found


ROOT_COMMAND = typer.main.get_command(app)
COMMANDS = commands(ROOT_COMMAND)


def command_of(words: list[str]) -> tuple[Any, list[str]]:
    command: Any = ROOT_COMMAND
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    return command, words


def help_of(words: tuple[str, ...]) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env=WIDE, prog_name="mpc")
    assert result.exit_code == 0, result.output
    return result.output


def test_every_command_is_checked() -> None:
    assert {" ".join(w) for w in COMMANDS} >= {"", "demo", "run", "worker", "dealer", "certs",
                                              "synth", "audit", "audit verify"}


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "mpc")
def test_help_shows_no_python_types(words: tuple[str, ...]) -> None:
    text = help_of(words)
    assert not PYTHON_TYPE.search(text), PYTHON_TYPE.search(text)
    usage = text.splitlines()[0]
    assert usage.startswith(" ".join(("Usage: mpc", *words)))
    assert not re.search(r"[<{]", usage), usage  # `{spec}`, `<path>`: not what one types
    command, _ = command_of(list(words))
    for param in command.params:  # every value an option takes has a name in capitals
        if param.param_type_name == "option" and not param.is_flag:
            assert param.metavar and param.metavar.isupper(), param.opts
            assert f"{param.opts[-1]} {param.metavar}" in text


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w) or "mpc")
def test_help_ends_with_an_example_that_runs_this_command(words: tuple[str, ...]) -> None:
    last = help_of(words).rstrip().splitlines()[-1].strip()
    assert last.startswith("Example: mpc "), last
    example = shlex.split(last.removeprefix("Example: "))[1:]
    command, rest = command_of(example)
    if words and not hasattr(command_of(list(words))[0], "commands"):
        assert tuple(example[:len(words)]) == words  # a command's own example
    assert not hasattr(command, "commands"), f"{last!r} names no command"
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    assert {w for w in rest if w.startswith("-")} <= options
    files = [w for w in rest if w.startswith(("usecases/", "parties/"))]
    assert all((ROOT / f).exists() for f in files), files  # shipped files it names


def test_a_long_example_is_not_wrapped() -> None:
    result = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "60"})
    assert ("  Example: mpc run usecases/oncology-product-use.toml --federation "
            "federation.toml --out results/\n") in result.output


def test_a_missing_argument_is_named_as_help_names_it() -> None:
    result = CliRunner().invoke(app, ["run"], env=WIDE)
    assert result.exit_code == 2 and "Missing argument 'SPEC'" in result.output


def test_version_is_the_installed_packages() -> None:
    proc = subprocess.run([sys.executable, "-m", "mpc", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["name"] == DISTRIBUTION
    assert proc.stdout == f"mpc {version(DISTRIBUTION)}\n"
    assert version(DISTRIBUTION) == pyproject["project"]["version"]
