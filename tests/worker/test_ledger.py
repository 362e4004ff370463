from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import AuditLog
from mpc.config.spec import parse_spec
from mpc.errors import PolicyRefused
from mpc.worker.ledger import EVENT, Ledger
from tests.helpers import spec_text

ABC = ["hospital_a", "hospital_b", "hospital_c"]


def spec(parties: list[str] = ABC, input_extra: str = "", family: str = "f",
         noise: str = "") -> object:
    text = spec_text("u", parties).replace(b'[input]\n', f'family = "{family}"\n[input]\n'
                                           .encode()).replace(
        b'dataset = "treatments"\n', f'dataset = "treatments"\n{input_extra}\n'.encode())
    if noise:
        text += f'noise = {{ mechanism = "discrete_laplace", epsilon = {noise} }}\n'.encode()
    return parse_spec(text)


def released(ledger: Ledger, job: str, s: object, budget: float | None = None) -> None:
    ledger.reserve("hospital_a", job, s, budget)  # type: ignore[arg-type]
    ledger.commit(job)


def test_off_by_one_party_sets_are_refused_in_both_directions() -> None:
    ledger = Ledger()
    released(ledger, "j1", spec(ABC[:2]))
    with pytest.raises(PolicyRefused, match="differ only by hospital_c"):
        ledger.reserve("hospital_a", "j2", spec(ABC), None)
    ledger.reserve("hospital_a", "j3", spec(ABC[:2], family="g"), None)  # another family
    ledger.reserve("hospital_a", "j4", spec(ABC[:2]), None)  # the same again


def test_windows_and_filters() -> None:
    ledger = Ledger()
    year = 'window = { column = "start_date", from = 2024-01-01, to = 2025-01-01 }'
    q1 = 'window = { column = "start_date", from = 2024-01-01, to = 2024-04-01 }'
    q2 = 'window = { column = "start_date", from = 2024-04-01, to = 2024-07-01 }'
    released(ledger, "j1", spec(input_extra=year))
    with pytest.raises(PolicyRefused, match="window overlaps"):
        ledger.reserve("hospital_a", "j2", spec(input_extra=q1), None)
    released(ledger, "j3", spec(input_extra=q1 + '\nschedule = "repeat"', family="r"))
    released(ledger, "j4", spec(input_extra=q2 + '\nschedule = "repeat"', family="r"))
    released(ledger, "j5", spec(input_extra='filter = { site = ["north"] }', family="x"))
    released(ledger, "j6", spec(input_extra='filter = { site = ["south"] }', family="x"))
    with pytest.raises(PolicyRefused, match="filter overlaps"):
        ledger.reserve("hospital_a", "j7", spec(
            input_extra='filter = { site = ["north", "south"] }', family="x"), None)


def test_budget_reserved_spent_and_reloaded(tmp_path: Path) -> None:
    ledger = Ledger()
    ledger.reserve("hospital_a", "j1", spec(noise="1.5"), 3.0)  # type: ignore[arg-type]
    with pytest.raises(PolicyRefused, match="needs epsilon 2, 1.5 of 3 is left"):
        ledger.reserve("hospital_a", "j2", spec(noise="2"), 3.0)  # type: ignore[arg-type]
    ledger.cancel("j1")  # aborted before anything left: nothing spent
    ledger.reserve("hospital_a", "j2", spec(noise="2"), 3.0)  # type: ignore[arg-type]
    release = ledger.commit("j2")
    assert release is not None
    with pytest.raises(PolicyRefused, match="no privacy budget is configured"):
        ledger.reserve("hospital_a", "j3", spec(noise="1"), None)  # type: ignore[arg-type]
    log = AuditLog(tmp_path / "a.jsonl", Ed25519PrivateKey.generate(), "hospital_a", "party")
    log.append(EVENT, **release.fields())
    reloaded = Ledger.from_log(tmp_path / "a.jsonl")
    assert reloaded.releases == [release] and reloaded.spent("treatments") == 2.0
