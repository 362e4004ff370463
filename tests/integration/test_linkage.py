"""Linkage and overlap through real processes over mutual TLS: the releases equal a
plaintext join of the same generated data (patients shared between parties)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from mpc.config.spec import DisclosureRules, parse_spec
from tests.conftest import Harness, generated_federation

HOSPITALS = ["hospital_a", "hospital_b", "hospital_c", "hospital_d", "hospital_e"]
INSURERS = ["insurer_a", "insurer_b"]
CATEGORIES = """[categories]
indication = ["NSCLC", "SCLC", "breast", "ovarian", "prostate"]
line = ["1", "2", "3+"]
product = ["osimertinib", "durvalumab", "olaparib"]
"""


def linkage_spec(left: str, right: str, min_cell: int, right_scope: str = "") -> bytes:
    return f"""name = "linkage{'-window' if right_scope else ''}"
kind = "linkage"
parties = ["{left}", "{right}"]
[linkage]
key = "pseudonym"
pad_to = 4000
[linkage.left]
party = "{left}"
dataset = "treatments"
by = ["indication", "line"]
reduce = {{ order_by = "line", keep = "first" }}
[linkage.right]
party = "{right}"
dataset = "claims"
by = ["product"]
reduce = {{ order_by = "claim_date", keep = "last" }}
{right_scope}
{CATEGORIES}[disclosure]
min_cell = {min_cell}
""".encode()


def overlap_spec(parties: list[str], min_cell: int, indication: str = "") -> bytes:
    names = ", ".join(f'"{p}"' for p in parties)
    scope = f'filter = {{ indication = ["{indication}"] }}' if indication else ""
    return f"""name = "overlap-{indication or len(parties)}"
kind = "overlap"
parties = [{names}]
[input]
dataset = "treatments"
{scope}
[overlap]
key = "pseudonym"
pad_to = 4000
[disclosure]
min_cell = {min_cell}
""".encode()


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Harness, dict[str, pd.DataFrame]]]:
    uses = ["linkage", "linkage-window", "overlap-2", "overlap-3", "overlap-5", "overlap-NSCLC"]
    lists = {"max_persons": 4000}  # the parties' list bound: pad_to may not be below it
    with generated_federation(tmp_path_factory.mktemp("linkage"), uses, hospitals=HOSPITALS,
                              insurers=INSURERS, pharmacies=(), patients=3000, seed=37,
                              bounds={"treatments": lists, "claims": lists}) as running:
        yield running


def reduced(df: pd.DataFrame, by: list[str], order_by: str, keep: str) -> pd.DataFrame:
    """One row per person: first (or last) by order_by, ties by the by columns."""
    ordered = df.sort_values([order_by, *by], kind="stable")
    return ordered.drop_duplicates("pseudonym", keep=keep)[["pseudonym", *by]]


def expected_release(values: np.ndarray, rules: DisclosureRules) -> tuple[np.ndarray, ...]:
    keep = np.array([rules.keeps(int(v), 1) for v in values])
    return keep, np.where(keep, values, 0)


def test_linkage_equals_a_plaintext_join(federation: tuple[Harness, dict]) -> None:
    harness, frames = federation
    text = linkage_spec("hospital_a", "insurer_a", min_cell=5)
    spec = parse_spec(text)
    outcome = harness.run(text)
    left = reduced(frames["hospital_a"], ["indication", "line"], "line", "first")
    right = reduced(frames["insurer_a"], ["product"], "claim_date", "last")
    joined = left.merge(right, on="pseudonym")
    assert 0 < len(joined) < min(len(left), len(right))
    index = pd.MultiIndex.from_tuples(spec.category_rows(), names=list(spec.group_by))
    table = joined.groupby(list(spec.group_by)).size().reindex(index, fill_value=0)
    values = np.append(table.to_numpy(), len(joined))
    keep, released = expected_release(values, outcome.rules)
    assert outcome.table is not None
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, released)
    assert outcome.table.scalar() == {"value": len(joined), "suppressed": False}
    assert keep[:-1].any() and (~keep[:-1]).any()


@pytest.mark.parametrize("n", [2, 3, 5])
def test_overlap_equals_plaintext_counts(federation: tuple[Harness, dict], n: int) -> None:
    harness, frames = federation
    parties = HOSPITALS[:n]
    outcome = harness.run(overlap_spec(parties, min_cell=5))
    seen = pd.concat([frames[p][["pseudonym"]].drop_duplicates().assign(party=p)
                      for p in parties]).groupby("pseudonym").size()
    hist = seen.value_counts().reindex(range(1, n + 1), fill_value=0).to_numpy()
    values = np.append(hist, len(seen))
    keep, released = expected_release(values, outcome.rules)
    assert outcome.table is not None
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, released)
    assert hist[1:].sum() > 0, "the data has patients at several hospitals"




def test_overlap_honours_the_input_filter(federation: tuple[Harness, dict]) -> None:
    """Distinct persons among the rows in scope only, as pandas counts them."""
    harness, frames = federation
    parties = HOSPITALS[:3]
    outcome = harness.run(overlap_spec(parties, min_cell=5, indication="NSCLC"))
    seen = pd.concat([frames[p][frames[p].indication == "NSCLC"][["pseudonym"]]
                      .drop_duplicates() for p in parties]).groupby("pseudonym").size()
    everyone = pd.concat([frames[p][["pseudonym"]].drop_duplicates() for p in parties])
    assert 0 < len(seen) < everyone.pseudonym.nunique()
    hist = seen.value_counts().reindex(range(1, 4), fill_value=0).to_numpy()
    keep, released = expected_release(np.append(hist, len(seen)), outcome.rules)
    assert outcome.table is not None
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, released)


def test_linkage_honours_a_sides_window(federation: tuple[Harness, dict]) -> None:
    """The right side counts only its claims in the window, as pandas does."""
    harness, frames = federation
    window = 'window = { column = "claim_date", from = 2024-01-01, to = 2024-07-01 }'
    text = linkage_spec("hospital_b", "insurer_b", min_cell=1, right_scope=window)
    spec = parse_spec(text)
    outcome = harness.run(text)
    claims = frames["insurer_b"]
    in_window = claims[(claims.claim_date >= "2024-01-01") & (claims.claim_date < "2024-07-01")]
    assert 0 < len(in_window) < len(claims)
    left = reduced(frames["hospital_b"], ["indication", "line"], "line", "first")
    joined = left.merge(reduced(in_window, ["product"], "claim_date", "last"), on="pseudonym")
    index = pd.MultiIndex.from_tuples(spec.category_rows(), names=list(spec.group_by))
    table = joined.groupby(list(spec.group_by)).size().reindex(index, fill_value=0)
    keep, released = expected_release(np.append(table.to_numpy(), len(joined)), outcome.rules)
    assert outcome.table is not None
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, released)
