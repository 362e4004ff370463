"""Failure oracles: a spec whose outcome would depend on one person's rows in a scope the
coordinator chose. Each attack is refused before data is read, or its outcome is the same
whether or not the target's rows exist."""

from __future__ import annotations

from tests.redteam.conftest import BEFORE_DATA, TARGET, Worlds, spec_text, with_target

WITHOUT_OLAPARIB = {"product": ["osimertinib", "durvalumab"], "line": ["1", "2", "3+"],
                    "indication": ["NSCLC", "SCLC", "breast", "ovarian", "prostate"]}


def test_a_filter_on_one_person_is_refused_before_any_data_is_read(worlds: Worlds) -> None:
    """filter = { pseudonym = [target] } with categories that leave out olaparib used to
    fail exactly when the target had olaparib at the hospital."""
    spec = spec_text("attack-0", "d0", categories=WITHOUT_OLAPARIB,
                     input_extra=f'filter = {{ pseudonym = ["{TARGET}"] }}')
    a = worlds.view("d0", worlds.frames(), spec)
    b = worlds.view("d0", with_target(worlds.frames()), spec)
    assert a == b
    assert a.status == "failed" and "never filtered on its person key" in a.message
    # refused at approval: no party got as far as reading its data
    assert a.phases == (BEFORE_DATA,)


def test_rows_outside_the_categories_are_left_out_silently(worlds: Worlds) -> None:
    """Categories that leave out the target's product, within a scope of one indication:
    the job releases the same table whether or not the target had that product."""
    spec = spec_text("attack-1", "d1", categories=WITHOUT_OLAPARIB,
                     input_extra='filter = { indication = ["ovarian"] }')
    a = worlds.view("d1", worlds.frames(), spec)
    b = worlds.view("d1", with_target(worlds.frames()), spec)
    assert a.status == "released" and a == b


def test_nulls_and_negative_values_do_not_fail_the_job(worlds: Worlds) -> None:
    """The target's rows carry a null group value and a negative sum: left out and
    clipped, never an error the coordinator could observe."""
    spec = spec_text("attack-2", "d2", measure="sum:cycles")
    a = worlds.view("d2", worlds.frames(), spec)
    b_frames = with_target(worlds.frames(), line=None)
    b_frames = with_target(b_frames, product="osimertinib", line="1", cycles=-1000)
    b = worlds.view("d2", b_frames, spec)
    assert a.status == "released" and a == b


def test_an_empty_scope_is_an_ordinary_result(worlds: Worlds) -> None:
    """A filter only the target's row matches: zeros in one world, one row in the other,
    and with zeros suppressed the two releases are the same."""
    frames = {p: df[df.indication != "prostate"] for p, df in worlds.frames().items()}
    spec = spec_text("attack-3", "d3", input_extra='filter = { indication = ["prostate"] }',
                     disclosure_extra="suppress_zero = true")
    a = worlds.view("d3", frames, spec)
    b = worlds.view("d3", with_target({p: df.copy() for p, df in frames.items()},
                                      indication="prostate"), spec)
    assert a.status == "released" and a == b
    assert not any(a.keep)


def test_a_one_day_window_is_refused_before_any_data_is_read(worlds: Worlds) -> None:
    spec = spec_text("attack-4", "d0", input_extra='window = { column = "start_date", '
                                                   'from = 2024-02-01, to = 2024-02-02 }')
    a = worlds.view("d0", worlds.frames(), spec)
    b = worlds.view("d0", with_target(worlds.frames()), spec)
    assert a == b and a.status == "failed"
    assert "windows of at least 90 days" in a.message
    assert a.phases == (BEFORE_DATA,)
