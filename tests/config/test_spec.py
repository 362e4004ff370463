from __future__ import annotations

import hashlib

import pytest

from mpc.config.spec import DisclosureRules, parse_spec
from mpc.errors import ConfigError
from tests.helpers import spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]


def test_spec_fields_and_hash() -> None:
    text = spec_text("product-use", PARTIES, measure="count_distinct:pseudonym",
                     min_contributors=3)
    spec = parse_spec(text)
    assert spec.parties == tuple(PARTIES) and spec.recipients == ("coordinator",)
    assert spec.shape == (3, 5, 3) and spec.cells == 45
    assert spec.category_rows()[:2] == [("osimertinib", "NSCLC", "1"),
                                       ("osimertinib", "NSCLC", "2")]
    assert str(spec.measure) == "count_distinct:pseudonym"
    assert spec.sha256 == hashlib.sha256(text).hexdigest()
    assert spec.disclosure == DisclosureRules(10, False, 3)


def test_numeric_categories_are_compared_as_strings() -> None:
    text = spec_text("x", PARTIES).replace(b'line = ["1", "2", "3+"]', b'line = [1, 2, "3+"]')
    assert parse_spec(text).categories[2] == ("line", ("1", "2", "3+"))


@pytest.mark.parametrize("edit,message", [
    ((b'kind = "aggregate"', b'kind = "magic"'), "kind: unknown kind"),
    ((b'measure = "count"', b'measure = "median:x"'), "aggregate.measure: expected"),
    ((b'min_contributors = 1', b'min_contributors = 4'), "exceeds the 3 parties"),
    ((b'min_cell = 10', b'min_cell = 0'), "min_cell: must be at least 1"),
    ((b'recipients = ["coordinator"]', b'recipients = ["insurer"]'), "neither 'coordinator'"),
    ((b'[disclosure]', b'colour = "blue"\n[disclosure]'), "categories.colour: not a group_by"),
    ((b'min_cell = 10', b'min_cel = 10'), "disclosure.min_cel: unknown field"),
    ((b'line = ["1", "2", "3+"]', b'line = ["1", "1"]'), "duplicate entries: 1"),
])
def test_bad_specs_name_the_field(edit: tuple[bytes, bytes], message: str) -> None:
    text = spec_text("x", PARTIES).replace(*edit)
    with pytest.raises(ConfigError, match=message):
        parse_spec(text, "usecases/x.toml")


def test_rules_state_the_release_condition() -> None:
    rules = DisclosureRules(min_cell=10, suppress_zero=False, min_contributors=2)
    assert rules.keeps(0, 0) and not rules.keeps(5, 3) and not rules.keeps(12, 1)
    assert rules.keeps(10, 2)
    assert not DisclosureRules(10, True, 1).keeps(0, 0)
    floors = DisclosureRules(min_cell=20, min_contributors=1, sensitivity=5)
    assert rules.with_floors(floors) == DisclosureRules(20, False, 2, sensitivity=5)
    assert rules.with_floors(floors).at_least_as_strict_as(rules)
    assert not rules.at_least_as_strict_as(rules.with_floors(DisclosureRules(11, False, 1)))
    # a lower sensitivity would calibrate noise below a party's contribution bound
    assert not rules.with_floors(floors).at_least_as_strict_as(
        DisclosureRules(20, False, 2, sensitivity=6))
