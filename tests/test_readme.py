"""The README agrees with the code: every `mpc` command and option it shows exists, every
file of the repository it names is there, and nothing that exists is called planned."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main

from mpc.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8")
        for p in [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]}


def command_lines(text: str) -> list[str]:
    """`mpc ...` invocations in code blocks and inline code."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("mpc "):
                lines.append(line)
    lines += [c for c in re.findall(r"`(mpc [^`]+)`", text)]
    return lines


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The command `words` names (after `mpc`), and the words after it."""
    command: Any = typer.main.get_command(app)
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words[0]]
        words = words[1:]
    return command, words


LINES = command_lines(README)


def test_the_readme_shows_commands() -> None:
    assert len(LINES) >= 15
    assert {w.split()[1] for w in LINES} >= {"demo", "run", "worker", "dealer", "certs",
                                             "synth", "audit"}


@pytest.mark.parametrize("line", sorted(set(LINES)))
def test_every_command_and_option_in_the_readme_exists(line: str) -> None:
    words = shlex.split(line.replace("[", " ").replace("]", " ").replace("...", " "))[1:]
    command, rest = resolve(words)
    assert not hasattr(command, "commands"), f"{line!r}: no such command"
    options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"{line!r}: {command.name} has no {word}"


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_repository_file_the_docs_name_exists(doc: str) -> None:
    named = set(re.findall(r"(?<![\w/.$-])((?:usecases|scripts|parties|docs|protos|mpc|tests)"
                           r"/[\w./-]*\w\.(?:toml|py|md|proto))", DOCS[doc]))
    named |= set(re.findall(r"(?<![\w/.-])([A-Z]+\.md)\b", DOCS[doc]))
    missing = sorted(n for n in named if not (ROOT / n).exists()
                     and not (ROOT / "docs" / n).exists())
    assert not missing, f"{doc} names files that do not exist: {missing}"


def test_the_readme_names_repository_files() -> None:
    assert re.search(r"scripts/bench_\w+\.py", README) and "usecases/" in README


def test_nothing_is_called_planned() -> None:
    for doc, text in DOCS.items():
        assert not re.search(r"\bplanned\b", text, re.I), f"{doc} still says 'planned'"
