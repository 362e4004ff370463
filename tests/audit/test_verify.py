"""`mpc audit verify` on the logs of a real run: the honest logs pass, and every kind of
tampering is caught with its own message.

Tampering within one log (edit, delete, swap, cut, forge) is caught by the chain and
the signatures. A member that rewrites its own log consistently, re-signing it with
its own key, is caught by the other members' logs: the cross-log checks."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import AuditLog
from mpc.audit.model import Report
from mpc.audit.verify import verify
from mpc.config.federation import load_federation
from tests.tamper import AUDITED_PARTIES as PARTIES
from tests.tamper import (
    Entries,
    assert_caught,
    first,
    first_message,
    read,
    rewrite,
    run_verify,
    write,
)


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
        batch, gone = first_message(entries, dir="received", peer="hospital_a")
        batch["messages"] = [m for m in batch["messages"] if m is not gone]
        return entries

    rewrite(case, honest, "hospital_b", drop_one_receipt)
    assert_caught(case, "delivery", "hospital_a logged message", "to hospital_b",
                  "never logged receiving it")


def test_digest_mismatch(case: Path, honest: Path) -> None:
    def alter(entries: Entries) -> Entries:
        first_message(entries, dir="received", peer="hospital_c")[1]["digest"] = "0" * 64
        return entries

    rewrite(case, honest, "hospital_b", alter)
    assert_caught(case, "digest", "from hospital_c to hospital_b", "another digest")


def test_messages_one_per_entry_as_earlier_versions_wrote_them_verify(
        case: Path, honest: Path) -> None:
    def unbatch(entries: Entries) -> Entries:
        out = []
        for e in entries:
            if e["event"] != "messages":
                out.append(e)
                continue
            out += [{k: v for k, v in e.items() if k != "messages"} | {"event": "message"} | m
                    for m in e["messages"]]
        return out

    def audit() -> Report:
        return verify(load_federation(case / "federation.toml"),
                      sorted((case / "logs").glob("*.jsonl")))

    batched = audit().jobs[0]["messages"]
    for party in PARTIES:
        rewrite(case, honest, party, unbatch)
    assert "message" in {e["event"] for e in read(case / "logs" / "hospital_a.jsonl")}
    report = audit()
    # Re-signed logs no longer match the heads the others recorded (that is caught), but
    # every message pairs as before: none is skipped, none reported undelivered.
    assert report.jobs[0]["messages"] == batched > 0
    assert not [f for f in report.findings if f.check in ("delivery", "digest")]

    def alter(entries: Entries) -> Entries:
        first(entries, "message", dir="received", peer="hospital_c")["digest"] = "0" * 64
        return entries

    rewrite(case, honest, "hospital_b", lambda entries: alter(unbatch(entries)))
    assert_caught(case, "digest", "from hospital_c to hospital_b", "another digest")


def test_a_malformed_message_batch_is_a_finding(case: Path, honest: Path) -> None:
    def spoil(entries: Entries) -> Entries:
        first(entries, "messages")["messages"] = "none"
        return entries

    rewrite(case, honest, "hospital_a", spoil)
    assert_caught(case, "chain", "hospital_a", "holds no list of messages")


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
