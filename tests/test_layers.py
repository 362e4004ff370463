"""What each package of mpc/ may import (docs/ARCHITECTURE.md, "Layers"): every import,
at module level or inside a function, is checked against the table below."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "mpc"
BASE = {"errors", "phases", "proto"}  # everyone may use these
ROLES = {"worker", "dealer", "runner"}

# Lowest layer first. A package not listed may import nothing of mpc besides BASE.
ALLOWED: dict[str, set[str]] = {
    "transport": {"config"},  # keys, TLS file names, the rules' wire form
    "config": {"transport", "kinds"},  # name checks; the spec asks the kind registry
    "audit": {"config", "transport", "report"},  # report: the result digest it checks
    "engine": {"transport", "audit"},  # audit: the dealer's log head type
    "protocols": {"config", "engine"},
    "connectors": {"config"},
    "kinds": {"config", "connectors", "protocols", "engine", "audit"},
    "report": {"config", "kinds", "protocols"},
    "worker": {"config", "transport", "audit", "engine", "protocols", "kinds", "report",
               "connectors"},  # connectors: the datasets checked at start (dataset_check.py)
    "dealer": {"config", "transport", "audit", "engine", "protocols", "kinds"},
    "runner": {"config", "transport", "audit", "report"},
    "synth": {"connectors"},
    "demo": {"config", "transport"},
    "testing": {"config", "transport", "engine", "protocols", "kinds", "dealer"},
    "cli": {"config", "transport", "audit", "kinds", "report", "worker", "dealer", "runner",
            "demo", "synth"},
}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "mpc" and len(parts) > 1 else None


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, package) of every mpc package a module imports."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = ([f"mpc.{a.name}" for a in node.names] if node.module == "mpc"
                     else [node.module])
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found += [(node.lineno, p) for p in map(_package, names) if p is not None]
    return found


def test_every_import_follows_the_layers() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        me = rel.parts[0].removesuffix(".py")
        if me in ("proto", "__init__", "__main__"):
            continue
        allowed = ALLOWED.get(me, set()) | BASE | {me}
        wrong += [f"mpc/{rel}:{line} imports mpc.{other}"
                  for line, other in imports_of(path) if other not in allowed]
    assert wrong == [], "imports across the layers:\n" + "\n".join(wrong)


def test_roles_never_import_each_other() -> None:
    for role in ROLES:
        assert not ALLOWED[role] & (ROLES - {role}), role


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("from mpc.errors import X\n"
                      "def f():\n    from mpc.runner.coordinator import Coordinator\n",
                      encoding="utf-8")
    assert imports_of(module) == [(1, "errors"), (3, "runner")]
