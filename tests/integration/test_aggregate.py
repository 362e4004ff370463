"""Real processes on loopback: the released table equals a plaintext pandas computation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mpc.config.spec import parse_spec
from tests.conftest import FIVE, Harness
from tests.helpers import plaintext_release, spec_text

MEASURES = ["count", "count_distinct:pseudonym", "sum:cycles"]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("n_parties", [3, 5])
def test_release_equals_plaintext(federation5: Harness, measure: str, n_parties: int) -> None:
    parties = FIVE[:n_parties]
    name = "product-use" if n_parties == 5 else "product-use-3"
    text = spec_text(name, parties, measure=measure, min_cell=10,
                     min_contributors=min(3, n_parties))
    outcome = federation5.run(text)
    table = outcome.table
    assert table is not None
    keep, value, total = plaintext_release(federation5.files, parse_spec(text), outcome.rules)
    np.testing.assert_array_equal(table.keep, keep)
    np.testing.assert_array_equal(table.value, value)
    # The data has cells of every kind, so the comparison above means something.
    assert keep.sum() > 0 and (~keep).sum() > 0, "expected both released and suppressed cells"
    assert ((total > 0) & (total < 10)).any() or (~keep & (total >= 10)).any()
    rows = table.rows()
    assert [r["value"] for r in rows if not r["suppressed"]] == list(value[keep])
    assert all(r["value"] is None for r in rows if r["suppressed"])


def test_zero_cells_suppressed_when_asked(federation5: Harness) -> None:
    text = spec_text("product-use-3", FIVE[:3], suppress_zero=True, min_cell=5)
    outcome = federation5.run(text)
    assert outcome.table is not None
    _, _, total = plaintext_release(federation5.files, parse_spec(text), outcome.rules)
    assert (total == 0).any()
    assert not outcome.table.keep[total == 0].any()
    np.testing.assert_array_equal(outcome.table.keep, total >= 5)


def test_mpc_run_shows_each_partys_phases_as_plain_lines(federation5: Harness,
                                                        tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_bytes(spec_text("product-use-3", FIVE[:3]))
    proc = subprocess.run([sys.executable, "-m", "mpc", "run", str(spec), "--federation",
                           str(federation5.fed.federation_file), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    order = ["policy approved", "local table", "ready", "connected", "sharing", "computing",
             "disclosure control", "released", "done"]
    for party in FIVE[:3]:
        seen = [line.split(f"{party}: ", 1)[1].split(" (")[0]
                for line in proc.stderr.splitlines() if f"] {party}: " in line]
        assert [p for p in seen if p in order] == order, seen
    assert (tmp_path / "out" / "product-use-3" / "result.csv").exists()
