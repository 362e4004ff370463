"""Sidestepping the release ledger, and differential privacy that did not mean what it
said. Each attack is now refused before any data is read, the same in both worlds."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mpc.config.spec import parse_spec
from mpc.errors import JobFailed
from tests.redteam.conftest import BEFORE_DATA, HOSPITALS, Worlds, spec_text, with_target


def refused_alike(worlds: Worlds, dataset: str, spec: bytes, words: str) -> None:
    a = worlds.view(dataset, worlds.frames(), spec)
    b = worlds.view(dataset, with_target(worlds.frames()), spec)
    assert a == b and a.status == "failed", a
    assert words in a.message, a.message
    assert a.phases == (BEFORE_DATA,)


def test_renames_subsets_coarser_tables_and_other_kinds_are_one_ledger(worlds: Worlds) -> None:
    full = spec_text("attack-30", "d7", parties=HOSPITALS)
    assert worlds.view("d7", worlds.frames(), full).status == "released"
    # a new name for the same query is no new question: it runs, and tells nothing new
    assert worlds.view("d7", worlds.frames(), full.replace(b"attack-30", b"attack-31")
                       ).status == "released"
    # four 3-of-4 jobs would solve for every party's table: each subset is refused
    for left_out in HOSPITALS:
        subset = [p for p in HOSPITALS if p != left_out]
        refused_alike(worlds, "d7", spec_text("attack-32", "d7", parties=subset),
                      "another party set")
    # a coarser table's margins give the suppressed cells
    refused_alike(worlds, "d7", spec_text("attack-33", "d7", parties=HOSPITALS,
                                          group_by=("product",)), "other categories, groups")
    # a kind other than the allowed name's: an overlap job on persons already counted
    overlap = spec_text("attack-30", "d7", parties=HOSPITALS, kind="overlap",
                        table_extra='key = "pseudonym"\npad_to = 400')
    refused_alike(worlds, "d7", overlap, "other categories, groups, kind")


NOISE = 'noise = {{ mechanism = "discrete_laplace", epsilon = {} }}'


def test_epsilon_is_capped_by_each_party(worlds: Worlds) -> None:
    refused_alike(worlds, "d1", spec_text("attack-34", "d1", disclosure_extra=NOISE.format(20)),
                  "epsilon 20 exceeds the 1 that dataset 'd1' allows per job")


def test_the_spec_cannot_choose_the_sensitivity(worlds: Worlds) -> None:
    """A coordinator that skips its own checks and sends `sensitivity = 1` as spec bytes."""
    clean = spec_text("attack-35", "d1", disclosure_extra=NOISE.format(1))
    forged = clean.replace(b"epsilon = 1 }", b"epsilon = 1, sensitivity = 1 }")
    assert forged != clean
    with pytest.raises(JobFailed) as failed:
        worlds.harness.run_parsed(replace(parse_spec(clean), text=forged))
    assert "each party derives it from its contribution bounds" in failed.value.cause
    assert "local_table" not in {phase for _, phase in worlds.harness.phases}


def test_a_party_floor_is_never_dropped_by_noise(worlds: Worlds) -> None:
    """hospital_d requires two contributors per cell, which noise cannot honour."""
    spec = spec_text("attack-36", "d1", parties=HOSPITALS[1:],
                     disclosure_extra=NOISE.format(1))
    refused_alike(worlds, "d1", spec, "min_contributors_floor (2) cannot be applied")


def test_noise_is_calibrated_to_the_parties_contribution_bounds(worlds: Worlds) -> None:
    """At most 5 rows per person: the noise covers a change of 5, not the 1 a spec once
    stated, and the released interval says so."""
    worlds.write("d1", worlds.frames())
    outcome = worlds.harness.run(spec_text("attack-37", "d1",
                                           disclosure_extra=NOISE.format(1)))
    assert outcome.rules.sensitivity == 5
    assert outcome.table is not None and outcome.table.interval is not None
    assert outcome.table.to_json()["noise"]["sensitivity"] == 5
    assert outcome.table.interval >= 5 * 2  # wider than a sensitivity-1 interval would be
