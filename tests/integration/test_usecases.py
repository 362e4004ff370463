"""Every use case in usecases/ on generated federation data (OMOP tables at hospitals,
claims at insurers, dispensing at pharmacies), through real processes: the release equals
an independent plaintext computation with pandas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mpc.config.spec import load_spec
from tests.conftest import Harness, generated_federation
from tests.helpers import plaintext_release_frames

ALL = sorted((Path(__file__).resolve().parents[2] / "usecases").glob("*.toml"))
USECASES = [u for u in ALL if load_spec(u).kind == "aggregate" and load_spec(u).noise is None]
NOISY = [u for u in ALL if load_spec(u).noise is not None]
LINKED = [u for u in ALL if load_spec(u).kind != "aggregate"]  # exact checks: test_linkage


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, dict]]:
    names = [load_spec(u).name for u in ALL]
    with generated_federation(tmp_path_factory.mktemp("usecases"), names, patients=2500,
                              seed=19) as running:
        yield running


@pytest.mark.parametrize("usecase", USECASES, ids=lambda p: p.stem)
def test_usecase_release_equals_plaintext(federation: tuple[Harness, dict],
                                          usecase: Path) -> None:
    harness, frames = federation
    spec = load_spec(usecase)
    outcome = harness.run(spec.text)
    assert outcome.table is not None
    keep, value, total = plaintext_release_frames(frames, spec, outcome.rules)
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)
    assert total.sum() > 0


@pytest.mark.parametrize("usecase", NOISY, ids=lambda p: p.stem)
def test_noisy_usecase_is_close_to_the_truth(federation: tuple[Harness, dict],
                                             usecase: Path) -> None:
    harness, frames = federation
    spec = load_spec(usecase)
    outcome = harness.run(spec.text)
    table = outcome.table
    assert table is not None and table.interval is not None
    _, _, total = plaintext_release_frames(frames, spec, outcome.rules)
    error = np.abs(table.value[table.keep] - total[table.keep])
    assert (error <= 10 * table.interval).all()  # the noise is small against the counts
    assert (table.value[table.keep] >= outcome.rules.min_cell).all()
    assert (error > 0).any(), "no noise was added"


@pytest.mark.parametrize("usecase", LINKED, ids=lambda p: p.stem)
def test_linkage_and_overlap_usecases_run(federation: tuple[Harness, dict],
                                          usecase: Path) -> None:
    harness, _ = federation
    spec = load_spec(usecase)
    outcome = harness.run(spec.text)
    assert outcome.table is not None
    scalar = outcome.table.scalar()
    assert scalar is not None and scalar["value"] > 0
