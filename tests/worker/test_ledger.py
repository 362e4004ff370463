"""The release ledger's rule, per dataset: the same query again, or rows no earlier release
counted; everything else on the dataset is refused and pointed to differential privacy."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import AuditLog
from mpc.config.bounds import DatasetBounds
from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.errors import PolicyRefused
from mpc.worker.ledger import EVENT, Ledger
from tests.helpers import spec_text

ABC = ["hospital_a", "hospital_b", "hospital_c"]
ABCD = [*ABC, "hospital_d"]
BOUNDS = DatasetBounds(epsilon_budget=3.0, delta_budget=1e-6)
Q1 = 'window = { column = "start_date", from = 2024-01-01, to = 2024-04-01 }'
Q2 = 'window = { column = "start_date", from = 2024-04-01, to = 2024-07-01 }'
YEAR = 'window = { column = "start_date", from = 2024-01-01, to = 2025-01-01 }'


def spec(parties: list[str] = ABC, input_extra: str = "", noise: str = "", name: str = "u",
         **options: object) -> UseCaseSpec:
    text = spec_text(name, parties, **options).replace(  # type: ignore[arg-type]
        b'dataset = "treatments"\n', f'dataset = "treatments"\n{input_extra}\n'.encode())
    if noise:
        text += f"noise = {{ {noise} }}\n".encode()
    return parse_spec(text)


def laplace(epsilon: float) -> str:
    return f'mechanism = "discrete_laplace", epsilon = {epsilon}'


def released(ledger: Ledger, job: str, s: UseCaseSpec, bounds: DatasetBounds = BOUNDS) -> None:
    ledger.reserve("hospital_a", job, s, bounds)
    ledger.commit(job)


def refused(ledger: Ledger, s: UseCaseSpec, match: str) -> str:
    with pytest.raises(PolicyRefused, match=match) as info:
        ledger.reserve("hospital_a", "refused", s, BOUNDS)
    assert "differential privacy" in str(info.value)
    return str(info.value)


def test_the_same_query_may_repeat_under_any_name() -> None:
    ledger = Ledger()
    released(ledger, "j1", spec())
    released(ledger, "j2", spec())
    released(ledger, "j3", spec(name="renamed"))  # the name is no key of the ledger


def test_any_other_party_set_is_refused() -> None:
    """Off by one or by two: four 3-of-4 jobs would solve for each party's table."""
    ledger = Ledger()
    released(ledger, "j1", spec(ABCD[:3]))
    refused(ledger, spec(ABCD), "another party set")
    refused(ledger, spec(["hospital_a", "hospital_b", "hospital_d"]), "another party set")
    refused(ledger, spec(ABC[:2]), "another party set")


@pytest.mark.parametrize(("changed", "named"), [
    ({"group_by": ("product", "line")}, "categories, groups"),  # coarser: margins reveal cells
    ({"categories": {"product": ["osimertinib", "durvalumab"],
                     "indication": ["NSCLC", "SCLC", "breast", "ovarian", "prostate"],
                     "line": ["1", "2", "3+"]}}, "categories"),
    ({"measure": "count_distinct:pseudonym"}, "measure"),
    ({"min_cell": 5}, "rules"),
], ids=["groups", "categories", "measure", "rules"])
def test_other_questions_on_the_same_rows_are_refused(changed: dict[str, object],
                                                      named: str) -> None:
    ledger = Ledger()
    released(ledger, "j1", spec())
    assert f"other {named}" in refused(ledger, spec(**changed), "differencing")


def test_another_kind_on_the_same_dataset_is_refused() -> None:
    """An overlap job counts persons the aggregate already counted."""
    ledger = Ledger()
    released(ledger, "j1", spec())
    overlap = parse_spec(b'name = "u"\nkind = "overlap"\nparties = ["hospital_a", '
                         b'"hospital_b", "hospital_c"]\n[input]\ndataset = "treatments"\n'
                         b'[overlap]\nkey = "pseudonym"\npad_to = 100\n')
    refused(ledger, overlap, "kind")


def test_disjoint_scopes_may_follow_each_other() -> None:
    ledger = Ledger()
    released(ledger, "j1", spec(input_extra=Q1))
    released(ledger, "j2", spec(input_extra=Q2))  # the next quarter
    released(ledger, "j3", spec(ABC[:2], input_extra=YEAR.replace("2024", "2026")
                                .replace("2025", "2027")))  # other rows, any question
    refused(ledger, spec(input_extra=YEAR), "overlapping but different scope")
    refused(ledger, spec(input_extra='filter = { site = ["north"] }'), "overlapping")
    ledger = Ledger()
    two = {"group_by": ("product", "line")}
    released(ledger, "j5", spec(input_extra='filter = { site = ["north"] }', **two))
    released(ledger, "j6", spec(input_extra='filter = { site = ["south"] }', **two))
    refused(ledger, spec(input_extra='filter = { site = ["north", "south"] }', **two),
            "overlapping")


def test_other_datasets_and_the_off_switch_are_independent() -> None:
    ledger = Ledger()
    released(ledger, "j1", spec())
    released(ledger, "j2", spec(ABC[:2], dataset="claims"))
    off = DatasetBounds(ledger=False)
    released(ledger, "j3", spec(ABC[:2]), off)  # synthetic data: the party turned it off


def test_running_jobs_count_too() -> None:
    ledger = Ledger()
    ledger.reserve("hospital_a", "j1", spec(), BOUNDS)
    refused(ledger, spec(ABC[:2]), "another party set")
    ledger.cancel("j1")
    released(ledger, "j2", spec(ABC[:2]))


def test_noisy_releases_spend_epsilon_and_delta(tmp_path: Path) -> None:
    ledger = Ledger()
    released(ledger, "j0", spec())
    ledger.reserve("hospital_a", "j1", spec(ABC[:2], noise=laplace(1.5)), BOUNDS)
    with pytest.raises(PolicyRefused, match="needs epsilon 2, 1.5 of 3 is left"):
        ledger.reserve("hospital_a", "j2", spec(noise=laplace(2)), BOUNDS)
    ledger.cancel("j1")  # aborted before anything left: nothing spent
    ledger.reserve("hospital_a", "j2", spec(noise=laplace(2)), BOUNDS)
    release = ledger.commit("j2")
    assert release is not None
    gauss = 'mechanism = "discrete_gaussian", epsilon = 0.5, delta = 1e-6'
    released(ledger, "j3", spec(noise=gauss))
    with pytest.raises(PolicyRefused, match="delta budget .* exhausted"):
        ledger.reserve("hospital_a", "j4", spec(noise=gauss), BOUNDS)
    log = AuditLog(tmp_path / "a.jsonl", Ed25519PrivateKey.generate(), "hospital_a", "party")
    log.append(EVENT, **release.fields())
    reloaded = Ledger.from_log(tmp_path / "a.jsonl")
    assert reloaded.releases == [release] and reloaded.spent("treatments") == (2.0, 0.0)
    # the reloaded entry is compared like the live one
    with pytest.raises(PolicyRefused, match="needs epsilon 1.5, 1 of 3 is left"):
        reloaded.reserve("hospital_a", "j5", spec(noise=laplace(1.5)), BOUNDS)
