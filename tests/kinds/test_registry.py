"""The job-kind registry: every kind is one module, and nothing else names a kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mpc.config.spec import parse_spec
from mpc.kinds import DEALER_PARTS, KINDS, JobKind, kind_of

ROOT = Path(__file__).resolve().parents[2] / "mpc"
KIND_MODULES = ROOT / "kinds"


def _kind_name_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in `path` that is exactly a kind's name,
    docstrings aside."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value in KINDS and id(node) not in docstrings]


def test_no_module_outside_the_kinds_names_a_kind() -> None:
    found = [f"{path.relative_to(ROOT.parent)}:{line}: {text!r}"
             for path in sorted(ROOT.rglob("*.py"))
             if KIND_MODULES not in path.parents and "proto" not in path.parts
             for line, text in _kind_name_literals(path)]
    assert found == [], "kind names outside mpc/kinds/:\n" + "\n".join(found)


def test_the_scan_finds_a_kind_name(tmp_path: Path) -> None:
    """The scan above would catch a comparison that crept back in."""
    module = tmp_path / "m.py"
    module.write_text('"""Docstring: linkage is fine here."""\n'
                      'def f(spec):\n    return spec.kind == "linkage"\n', encoding="utf-8")
    assert _kind_name_literals(module) == [(3, "linkage")]


def test_every_kind_is_registered_under_its_sections_name() -> None:
    for name, kind in KINDS.items():
        assert isinstance(kind, JobKind)
        assert kind.name == name


def test_dealer_parts_are_unique_per_kind() -> None:
    parts = [part for kind in KINDS.values() if kind.dealer is not None
             for part in kind.dealer.parts]
    assert sorted(parts) == sorted(DEALER_PARTS)
    for part, (dealer_part, index) in DEALER_PARTS.items():
        assert dealer_part.parts[index] == part


@pytest.mark.parametrize("path", sorted((ROOT.parent / "usecases").glob("*.toml")),
                         ids=lambda p: p.stem)
def test_each_shipped_use_case_parses_into_its_kinds_section(path: Path) -> None:
    spec = parse_spec(path.read_bytes(), str(path))
    kind = kind_of(spec.job)
    assert kind is KINDS[spec.kind]
    assert spec.job.group_by == spec.group_by and spec.cells >= 1
    assert spec.released_size == kind.released_size(spec) >= spec.cells
    for party in spec.parties:
        assert spec.dataset_of(party)
