"""A coordinator or dealer that rewrites its own log afterwards (it holds its own key, so
the chain alone cannot catch it): every party pins both members' signed log heads for the
job, and `mpc audit verify` requires the pins and checks them against the logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mpc.audit.verify import verify
from mpc.config.federation import load_federation
from tests.tamper import AUDITED_PARTIES as PARTIES
from tests.tamper import Entries, assert_caught, first, read, rewrite, write


def findings_of(case: Path) -> list[Any]:
    return verify(load_federation(case / "federation.toml"),
                  sorted((case / "logs").glob("*.jsonl"))).findings


def assert_named(case: Path, check: str, member: str, *phrases: str) -> None:
    """A finding of this check that names the member and the job."""
    job = first(read(case / "logs" / "hospital_a.jsonl"), "job_received")["job"]
    findings = findings_of(case)
    hits = [f for f in findings if (f.check, f.member, f.job) == (check, member, job)
            and all(p in f.message for p in phrases)]
    assert hits, f"no {check} finding on {member} in job {job} with {phrases}; got:\n" + \
        "\n".join(f"{f.check} {f.member} {f.job}: {f.message}" for f in findings)


def test_every_party_pins_the_coordinators_and_the_dealers_log(case: Path) -> None:
    dealer = read(case / "logs" / "dealer.jsonl")
    coordinator = read(case / "logs" / "coordinator.jsonl")
    for party in PARTIES:
        pins = {e["member_role"]: e["head"] for e in read(case / "logs" / f"{party}.jsonl")
                if e["event"] == "member_head"}
        assert sorted(pins) == ["coordinator", "dealer"]
        left = dealer[pins["dealer"]["seq"]]  # right after the dealer logged this leave
        assert (left["event"], left["party"], left["hash"], left["sig"]) == (
            "party_left", party, pins["dealer"]["hash"], pins["dealer"]["sig"])
        end = coordinator[pins["coordinator"]["seq"]]  # after its result and the job's end
        assert (end["event"], end["hash"]) == ("job_end", pins["coordinator"]["hash"])


def test_a_coordinator_that_resigns_its_log_without_the_job_is_caught(case: Path,
                                                                      honest: Path) -> None:
    def drop_the_job(entries: Entries) -> Entries:
        return [e for e in entries if "job" not in e or e["event"] == "job_submitted"]

    rewrite(case, honest, "coordinator", drop_the_job)
    assert_named(case, "truncated", "coordinator", "coordinator's log ends at entry",
                 "recorded its entry")


def test_a_coordinator_that_rewrites_an_entry_of_the_job_is_caught(case: Path,
                                                                   honest: Path) -> None:
    def other_rules(entries: Entries) -> Entries:
        first(entries, "job_start")["rules"]["min_cell"] = 1
        return entries

    rewrite(case, honest, "coordinator", other_rules)
    assert_named(case, "chain", "coordinator", "is not the one", "the log was rewritten")


def test_a_truncated_dealer_log_is_caught(case: Path) -> None:
    path = case / "logs" / "dealer.jsonl"
    entries = read(path)
    last_leave = max(i for i, e in enumerate(entries) if e["event"] == "party_left")
    write(path, entries[:last_leave])  # cut cleanly at a line boundary
    assert_named(case, "truncated", "dealer", "dealer's log ends at entry", "recorded its entry")


def test_a_rewritten_dealer_log_is_caught(case: Path, honest: Path) -> None:
    def served_other(entries: Entries) -> Entries:
        for e in entries:
            if e["event"] == "party_left":
                e["served"] += 1
        return entries

    rewrite(case, honest, "dealer", served_other)
    assert_named(case, "chain", "dealer", "dealer's entry", "is not the one")


@pytest.mark.parametrize("role", ["coordinator", "dealer"])
def test_a_missing_pin_is_caught(case: Path, honest: Path, role: str) -> None:
    def unpin(entries: Entries) -> Entries:
        return [e for e in entries if not (e["event"] == "member_head"
                                           and e["member_role"] == role)]

    for party in PARTIES:
        rewrite(case, honest, party, unpin)
    assert_named(case, "pin", role, f"no party pinned the log head of {role}")


def test_a_party_that_applied_other_rules_is_caught(case: Path, honest: Path) -> None:
    def weaker(entries: Entries) -> Entries:
        first(entries, "session_start")["rules"]["min_cell"] = 2
        return entries

    rewrite(case, honest, "hospital_c", weaker)
    assert_caught(case, "rules", "the parties applied different rules for this job",
                  "hospital_c: min_cell 2")
