"""The size oracle: a binary search over pad_to used to find a party's exact number of
persons (a pad_to below the true size failed and named the party), and building the padded
list took longer the more real persons there were."""

from __future__ import annotations

import pandas as pd
import pytest

import mpc.protocols.linkage as linkage
from mpc.protocols.blind import new_key
from tests.redteam.conftest import (
    BEFORE_DATA,
    BOUNDS,
    HOSPITALS,
    TARGET,
    Worlds,
    spec_text,
    with_target,
)

PARTIES = HOSPITALS[:3]


def overlap(name: str, pad_to: int, extra: str = "", dataset: str = "d4") -> bytes:
    return spec_text(name, dataset, parties=PARTIES, kind="overlap", input_extra=extra,
                     table_extra=f'key = "pseudonym"\npad_to = {pad_to}', min_cell=5)


def test_pad_to_below_the_list_bound_is_refused_whatever_the_size(worlds: Worlds) -> None:
    bound = BOUNDS["max_persons"]
    probes = [overlap("attack-10", pad) for pad in (1, 150, bound - 1)]
    views = [worlds.view("d4", frames, probe) for probe in probes
             for frames in (worlds.frames(), with_target(worlds.frames()))]
    assert all(v.status == "failed" and "below the list bound" in v.message for v in views)
    # the message names the bound and the padded size asked for, never the data's size
    for probe, v in zip([p for p in probes for _ in range(2)], views, strict=True):
        assert v.message == views[0].message.replace(
            "pad_to 1 ", f"pad_to {probe.decode().split('pad_to = ')[1].split()[0]} ")
    assert views[0].phases == (BEFORE_DATA,)


def test_at_the_bound_both_sizes_run_the_same_phases(worlds: Worlds) -> None:
    spec = overlap("attack-11", BOUNDS["max_persons"])
    a = worlds.view("d4", worlds.frames(), spec)
    b = worlds.view("d4", with_target(worlds.frames()), spec)
    assert a.status == b.status == "released"
    assert a.phases == b.phases and a.keep == b.keep


def test_a_dataset_over_its_bound_fails_every_job_alike(worlds: Worlds) -> None:
    """More persons than the party's own bound: every spec on the dataset fails with the
    same message, however small the scope it asks for."""
    frames = worlds.frames()
    extra = pd.DataFrame({"pseudonym": [f"{TARGET}-{i}" for i in range(BOUNDS["max_persons"])],
                          "product": "osimertinib", "indication": "NSCLC", "line": "1",
                          "cycles": 1, "start_date": "2024-01-15"})
    frames["hospital_b"] = pd.concat([frames["hospital_b"], extra], ignore_index=True)
    views = [worlds.view("d5", frames, spec) for spec in (
        overlap("attack-12", BOUNDS["max_persons"], dataset="d5"),
        overlap("attack-13", 4 * BOUNDS["max_persons"],
                'filter = { indication = ["prostate"] }', dataset="d5"))]
    assert views[0] == views[1] and views[0].status == "failed"
    assert "more persons than its list bound" in views[0].message
    assert str(len(frames["hospital_b"].pseudonym.unique())) not in views[0].message


@pytest.mark.parametrize("real", [0, 10, 500])
def test_building_a_padded_list_costs_the_same_for_any_number_of_persons(
        monkeypatch: pytest.MonkeyPatch, real: int) -> None:
    """Dummies go through the same hash and blinding as real ids, so the work (and so the
    time) is that of pad_to ids whatever the true size. Counted, not timed."""
    hashed: list[int] = []
    original = linkage.hash_and_blind

    def counting(job_id: str, ids: list[str], key: bytes, **kwargs: object) -> bytes:
        hashed.append(len(ids))
        return original(job_id, ids, key)

    monkeypatch.setattr(linkage, "hash_and_blind", counting)
    monkeypatch.setattr(linkage, "random_points", lambda n: pytest.fail("cheap dummies"),
                        raising=False)
    points, order = linkage.padded_list("job-1234", [f"p{i}" for i in range(real)], 600,
                                        new_key())
    assert hashed == [600] and len(points) == 600 * 32 and sorted(order) == list(range(600))
