"""`mpc audit verify` on the logs of a real run: the honest logs pass, and every kind of
tampering is caught with its own message.

Tampering within one log (edit, delete, swap, cut, forge) is caught by the chain and
the signatures. A member that rewrites its own log consistently, re-signing it with
its own key, is caught by the other members' logs: the cross-log checks."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import GENESIS, AuditLog, canonical, entry_hash, load_signing_key
from mpc.audit.verify import verify
from mpc.config.federation import load_federation
from mpc.synth import generate_treatments
from tests.conftest import Harness, start_federation
from tests.helpers import spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
Entries = list[dict[str, Any]]


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished federation: its folder holds logs/, certs/ and federation.toml."""
    root = tmp_path_factory.mktemp("audited")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=400, seed=31)
    fed = start_federation(root / "fed", files, ["product-use", "refused-by-b"])
    try:
        harness = Harness(fed, files)
        outcome = harness.run(spec_text("product-use", PARTIES, min_contributors=3))
        assert outcome.table is not None and outcome.table.suppressed_cells > 0
    finally:
        fed.stop()
    yield fed.root


@pytest.fixture()
def case(honest: Path, tmp_path: Path) -> Path:
    """A copy of the honest logs and federation file to tamper with, without the certs
    (an auditor elsewhere has only these); the signing keys stay with the original."""
    shutil.copytree(honest / "logs", tmp_path / "logs")
    shutil.copy(honest / "federation.toml", tmp_path / "federation.toml")
    return tmp_path


def run_verify(folder: Path) -> tuple[bool, list[str]]:
    report = verify(load_federation(folder / "federation.toml"),
                    sorted((folder / "logs").glob("*.jsonl")))
    return report.ok, [f"{f.check}: {f.message}" for f in report.findings]


def read(path: Path) -> Entries:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, entries: Entries) -> None:
    path.write_text("".join(canonical(e).decode() + "\n" for e in entries))


def resign(entries: Entries, key: Ed25519PrivateKey) -> Entries:
    """What a member holding its own key can do: rewrite its log as a consistent chain."""
    out, prev = [], GENESIS
    for seq, e in enumerate(entries):
        body = {k: v for k, v in e.items() if k not in ("hash", "sig")} | {"seq": seq,
                                                                            "prev": prev}
        digest = entry_hash(body)
        out.append(body | {"hash": digest,
                           "sig": base64.b64encode(key.sign(bytes.fromhex(digest))).decode()})
        prev = digest
    return out


def rewrite(case: Path, honest: Path, member: str, change: Callable[[Entries], Entries]) -> None:
    path = case / "logs" / f"{member}.jsonl"
    key = load_signing_key(honest / "certs" / f"{member}.sign.key")
    write(path, resign(change(read(path)), key))


def first(entries: Entries, event: str, **match: Any) -> dict[str, Any]:
    return next(e for e in entries if e["event"] == event
                and all(e.get(k) == v for k, v in match.items()))


def assert_caught(case: Path, check: str, *phrases: str) -> None:
    ok, findings = run_verify(case)
    assert not ok
    hits = [f for f in findings if f.startswith(check + ":") and all(p in f for p in phrases)]
    assert hits, f"no {check} finding with {phrases}; got:\n" + "\n".join(findings)


def test_honest_logs_pass(case: Path) -> None:
    ok, findings = run_verify(case)
    assert ok, "\n".join(findings)


def test_cli_gives_the_same_verdict_from_another_folder(case: Path) -> None:
    logs = sorted(str(p) for p in (case / "logs").glob("*.jsonl"))
    cmd = [sys.executable, "-m", "mpc", "audit", "verify", "--federation",
           str(case / "federation.toml"), *logs]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert text.returncode == 0 and "Verdict: PASS" in text.stdout, text.stdout + text.stderr
    as_json = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(as_json.stdout)
    assert report["ok"] and report["jobs"][0]["status"] == "completed"
    assert {log["member"] for log in report["logs"]} == {*PARTIES, "dealer", "coordinator"}


def test_edited_entry(case: Path) -> None:
    path = case / "logs" / "hospital_a.jsonl"
    entries = read(path)
    first(entries, "policy_decision")["usecase"] = "something-else"
    write(path, entries)
    assert_caught(case, "edited", "hospital_a", "policy_decision", "does not match its hash")


def test_deleted_entry(case: Path) -> None:
    path = case / "logs" / "hospital_b.jsonl"
    entries = read(path)
    del entries[5]
    write(path, entries)
    assert_caught(case, "deleted", "hospital_b", "entry 5 missing")


def test_swapped_entries(case: Path) -> None:
    path = case / "logs" / "hospital_c.jsonl"
    entries = read(path)
    entries[3], entries[4] = entries[4], entries[3]
    write(path, entries)
    assert_caught(case, "order", "hospital_c", "swapped")


def test_torn_end(case: Path) -> None:
    path = case / "logs" / "dealer.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # a crash in the middle of the last write
    ok, findings = run_verify(case)
    assert any(f.startswith("truncated:") and "last line is incomplete" in f for f in findings)
    # the prefix still verifies: no chain or signature finding about the dealer
    assert not [f for f in findings if f.startswith(("chain", "signature", "edited"))
                and "dealer" in f]


def test_last_entries_cut_from_one_log_only(case: Path) -> None:
    path = case / "logs" / "hospital_b.jsonl"
    entries = read(path)
    end = entries.index(first(entries, "job_end"))
    write(path, entries[:end])  # cut cleanly at a line boundary
    assert_caught(case, "truncated", "hospital_b's log ends at entry", "recorded its entry")
    assert_caught(case, "truncated", "hospital_b's log stops in the middle of this job")


def test_forged_signature(case: Path) -> None:
    path = case / "logs" / "coordinator.jsonl"
    entries = read(path)
    intruder = Ed25519PrivateKey.generate()
    target = first(entries, "result")
    target["sig"] = base64.b64encode(intruder.sign(bytes.fromhex(target["hash"]))).decode()
    write(path, entries)
    assert_caught(case, "signature", "coordinator", "forged signature")


def test_key_not_in_the_federation(case: Path) -> None:
    rogue = AuditLog(case / "logs" / "mallory.jsonl", Ed25519PrivateKey.generate(), "mallory",
                     "party")
    rogue.append("service_start", listen="127.0.0.1:1")
    assert_caught(case, "key", "mallory", "not a member of the federation")


def test_message_sent_but_never_received(case: Path, honest: Path) -> None:
    def drop_one_receipt(entries: Entries) -> Entries:
        gone = first(entries, "message", dir="received", peer="hospital_a")
        return [e for e in entries if e is not gone]

    rewrite(case, honest, "hospital_b", drop_one_receipt)
    assert_caught(case, "delivery", "hospital_a logged message", "to hospital_b",
                  "never logged receiving it")


def test_digest_mismatch(case: Path, honest: Path) -> None:
    def alter(entries: Entries) -> Entries:
        first(entries, "message", dir="received", peer="hospital_c")["digest"] = "0" * 64
        return entries

    rewrite(case, honest, "hospital_b", alter)
    assert_caught(case, "digest", "from hospital_c to hospital_b", "another digest")


def test_opening_to_a_non_recipient(case: Path, honest: Path) -> None:
    def leak(entries: Entries) -> Entries:
        first(entries, "release")["recipient"] = "hospital_c"
        return entries

    rewrite(case, honest, "hospital_a", leak)
    assert_caught(case, "recipients", "hospital_a released the result to hospital_c")


def test_released_cell_breaking_the_rules(case: Path, honest: Path) -> None:
    def unsuppress(entries: Entries) -> Entries:
        from mpc.report.table import result_digest

        result = first(entries, "result")
        cell = result["values"].index(None)
        result["values"][cell] = 3  # a small count, released
        import numpy as np

        keep = np.array([v is not None for v in result["values"]])
        result["digest"] = result_digest(keep, np.array([v or 0 for v in result["values"]]))
        return entries

    rewrite(case, honest, "coordinator", unsuppress)
    assert_caught(case, "disclosure", "released with value 3", "min_cell 10")


def test_dealer_ledger_disagrees(case: Path, honest: Path) -> None:
    def miscount(entries: Entries) -> Entries:
        ledger = first(entries, "dealer_ledger")
        ledger["requests"] = ledger["requests"][:-1]
        return entries

    rewrite(case, honest, "hospital_c", miscount)
    assert_caught(case, "dealer", "hospital_c's ledger of dealer requests disagrees")


def test_spec_hash_differs(case: Path, honest: Path) -> None:
    def other_spec(entries: Entries) -> Entries:
        first(entries, "policy_decision")["spec_sha256"] = "ab" * 32
        return entries

    rewrite(case, honest, "hospital_b", other_spec)
    assert_caught(case, "spec", "different specs", "hospital_b: abababababab")


def test_job_ran_although_a_policy_refused(case: Path, honest: Path) -> None:
    def refuse(entries: Entries) -> Entries:
        decision = first(entries, "policy_decision")
        decision["approved"] = False
        decision["reason"] = "use case 'product-use' is not allowed by its policy"
        return entries

    rewrite(case, honest, "hospital_b", refuse)
    assert_caught(case, "policy", "ran although hospital_b's policy refused it")


def test_missing_log(case: Path) -> None:
    (case / "logs" / "hospital_c.jsonl").unlink()
    assert_caught(case, "missing", "no log from hospital_c")


# ---- the coordinator's and the dealer's logs are pinned by the parties ---------------------
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
