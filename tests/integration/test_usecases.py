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
# exact checks: test_linkage and test_distribution
LINKED = [u for u in ALL if load_spec(u).kind in ("linkage", "overlap")]
DISTRIBUTIONS = [u for u in ALL if load_spec(u).kind == "distribution"]


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


@pytest.mark.parametrize("usecase", DISTRIBUTIONS, ids=lambda p: p.stem)
def test_distribution_usecases_release_plausible_medians(federation: tuple[Harness, dict],
                                                          usecase: Path) -> None:
    """On the generated hospitals' treatment episodes (the OMOP view), the first-line
    osimertinib median is released and lies where the generator puts it (the exact
    comparison with plaintext is tests/integration/test_distribution.py)."""
    from mpc.kinds.distribution import decode

    harness, _ = federation
    outcome = harness.run(load_spec(usecase).text)
    assert outcome.table is not None
    groups = {g.categories: g for g in decode(outcome.table)}
    first_line = groups[("osimertinib", "1")]
    assert first_line.n is not None and first_line.n > 100
    median = dict((q, days) for q, _, days in first_line.quantiles)[0.5]
    if outcome.spec.job.column == "duration_days":  # type: ignore[attr-defined]
        assert median is not None and 300 <= median <= 900, median  # 10 to 30 months
    else:  # most first-line patients need no next line: its median may not be reached
        assert median is not None and median >= 180, median
    assert any(s is not None and s < 1 for _, s in first_line.curve)
