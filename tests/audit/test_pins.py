"""The audit pins every member, on logs written here (no processes): a party pins the
coordinator's and the dealer's log heads, the verifier requires both pins for a job that
released and finds a coordinator or dealer that dropped, cut or re-signed its entries of
the job afterwards; and every party applied the same rules."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.events import MEMBER_HEAD
from mpc.audit.log import GENESIS, AuditLog, canonical, entry_hash
from mpc.audit.verify import verify
from mpc.config.federation import load_federation

PARTIES = ["hospital_a", "hospital_b"]
MEMBERS = {"coordinator": "coordinator", "dealer": "dealer",
           **dict.fromkeys(PARTIES, "party")}
JOB = "job-pinned-0001"
SPEC = "ab" * 32
RULES = {"min_cell": 10, "min_contributors": 1, "suppress_zero": False}
Entries = list[dict[str, Any]]


class Logs:
    """A federation file and the members' logs of one job (or more), written by hand."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.keys = {m: Ed25519PrivateKey.generate() for m in MEMBERS}
        self.logs = {m: AuditLog(self.path(m), self.keys[m], m, role)
                     for m, role in MEMBERS.items()}

        def public(m: str) -> str:
            raw = self.keys[m].public_key().public_bytes(serialization.Encoding.Raw,
                                                         serialization.PublicFormat.Raw)
            return "ed25519:" + base64.b64encode(raw).decode()

        parties = "".join(f'[parties.{p}]\naddress = "127.0.0.1:{5001 + i}"\n'
                          f'signing_public_key = "{public(p)}"\n'
                          for i, p in enumerate(PARTIES))
        (folder / "federation.toml").write_text(
            f'ca = "ca.pem"\n[coordinator]\nname = "coordinator"\n'
            f'signing_public_key = "{public("coordinator")}"\n'
            f'[dealer]\nname = "dealer"\naddress = "127.0.0.1:5000"\n'
            f'signing_public_key = "{public("dealer")}"\n{parties}')
        for log in self.logs.values():
            log.append("service_start", listen="127.0.0.1:1")

    def path(self, member: str) -> Path:
        return self.folder / f"{member}.jsonl"

    def job(self, job: str = JOB, *, released: bool = True, pins: tuple[str, ...] = (
            "coordinator", "dealer"), rules: dict[str, dict[str, Any]] | None = None) -> None:
        """One job as the services log it, pins included."""
        c, d = self.logs["coordinator"], self.logs["dealer"]
        c.append("job_submitted", job=job, usecase="u", spec_sha256=SPEC, parties=PARTIES,
                 recipients=["coordinator"], spec="")
        for rank, p in enumerate(PARTIES):
            applied = (rules or {}).get(p, RULES)
            self.logs[p].append_many([
                ("job_received", {"job": job, "coordinator": "coordinator",
                                  "spec_sha256": SPEC}),
                ("policy_decision", {"job": job, "approved": True, "usecase": "u",
                                     "spec_sha256": SPEC, "parties": PARTIES,
                                     "recipients": ["coordinator"]}),
                ("session_start", {"job": job, "spec_sha256": SPEC, "parties": PARTIES,
                                   "rank": rank, "coordinator": "coordinator",
                                   "certificates": {}, "dealer": "dealer", "rules": applied,
                                   "rules_sha256": entry_hash(applied)})])
        d.append("job_joined_first", job=job, parties=PARTIES, spec_sha256=SPEC)
        for rank, p in enumerate(PARTIES):
            d.append("party_joined", job=job, party=p, rank=rank)
        for p in PARTIES:
            if released:
                self.logs[p].append("release", job=job, recipient="coordinator",
                                    coordinator="coordinator", digests={})
            left = d.append("party_left", job=job, party=p, requests=0, served=0)
            if "dealer" in pins:
                self.pin(p, job, "dealer", left)
            self.logs[p].append("job_end", job=job, dealer_requests=0)
        heads = {p: self.logs[p].head() for p in PARTIES}
        for p in PARTIES:
            self.logs[p].append("peer_heads", job=job, heads=[
                h.as_dict() for q, h in heads.items() if q != p])
        c.append("job_start", job=job, rules=RULES)
        c.append("party_heads", job=job, heads=[self.logs[p].head().as_dict()
                                                 for p in PARTIES])
        end = c.append("job_end", job=job)
        if "coordinator" in pins:
            for p in PARTIES:
                self.pin(p, job, "coordinator", end)

    def pin(self, party: str, job: str, role: str, entry: dict[str, Any]) -> None:
        head = {k: entry[k] for k in ("member", "seq", "hash", "sig")}
        self.logs[party].append(MEMBER_HEAD, job=job, member_role=role, head=head)

    def read(self, member: str) -> Entries:
        return [json.loads(line) for line in self.path(member).read_text().splitlines()]

    def write(self, member: str, entries: Entries) -> None:
        self.path(member).write_text("".join(canonical(e).decode() + "\n" for e in entries))

    def resign(self, member: str, change: Callable[[Entries], Entries]) -> None:
        """What a member holding its own key can do: rewrite its log as a consistent chain."""
        out, prev = [], GENESIS
        for seq, e in enumerate(change(self.read(member))):
            body = {k: v for k, v in e.items() if k not in ("hash", "sig")} | {
                "seq": seq, "prev": prev}
            digest = entry_hash(body)
            sig = base64.b64encode(self.keys[member].sign(bytes.fromhex(digest))).decode()
            out.append(body | {"hash": digest, "sig": sig})
            prev = digest
        self.write(member, out)

    def findings(self) -> list[tuple[str, str | None, str | None, str]]:
        report = verify(load_federation(self.folder / "federation.toml"),
                        [self.path(m) for m in MEMBERS])
        return [(f.check, f.member, f.job, f.message) for f in report.findings]


@pytest.fixture()
def logs(tmp_path: Path) -> Logs:
    return Logs(tmp_path)


def caught(logs: Logs, check: str, member: str, job: str, *phrases: str) -> None:
    findings = logs.findings()
    hits = [f for f in findings if f[:3] == (check, member, job)
            and all(p in f[3] for p in phrases)]
    assert hits, f"no {check} finding on {member} in {job} with {phrases}: {findings}"


def test_honest_logs_with_pins_pass(logs: Logs) -> None:
    logs.job()
    logs.job("job-pinned-0002")
    assert logs.findings() == []
    pins = [e for e in logs.read("hospital_a") if e["event"] == MEMBER_HEAD]
    assert [(e["job"], e["member_role"]) for e in pins] == [
        (JOB, "dealer"), (JOB, "coordinator"), ("job-pinned-0002", "dealer"),
        ("job-pinned-0002", "coordinator")]


def test_a_coordinator_that_resigns_its_log_without_the_job_is_caught(logs: Logs) -> None:
    logs.job()
    logs.job("job-pinned-0002")  # a later job keeps the rewritten log long enough
    logs.resign("coordinator", lambda es: [e for e in es if e.get("job") != JOB])
    caught(logs, "chain", "coordinator", JOB, "coordinator's entry",
           "is not the one hospital_a recorded")


def test_a_coordinator_that_cuts_the_job_from_its_end_is_caught(logs: Logs) -> None:
    logs.job()
    logs.resign("coordinator", lambda es: [e for e in es if e.get("job") != JOB])
    caught(logs, "truncated", "coordinator", JOB, "coordinator's log ends at entry 0",
           "recorded its entry")


def test_a_truncated_dealer_log_is_caught(logs: Logs) -> None:
    logs.job()
    entries = logs.read("dealer")
    logs.write("dealer", entries[:-1])  # its last party_left, cut at a line boundary
    caught(logs, "truncated", "dealer", JOB, "dealer's log ends at entry",
           "hospital_b recorded its entry")


def test_a_rewritten_dealer_log_is_caught(logs: Logs) -> None:
    logs.job()

    def served_more(entries: Entries) -> Entries:
        for e in entries:
            if e["event"] == "party_left":
                e["served"] = 7
        return entries

    logs.resign("dealer", served_more)
    caught(logs, "chain", "dealer", JOB, "is not the one hospital_a recorded")


@pytest.mark.parametrize("role", ["coordinator", "dealer"])
def test_a_missing_pin_is_caught(logs: Logs, role: str) -> None:
    logs.job(pins=tuple({"coordinator", "dealer"} - {role}))
    caught(logs, "pin", role, JOB, f"no party pinned the log head of {role}",
           "although the job released")


def test_a_job_that_released_nothing_needs_no_pins(logs: Logs) -> None:
    logs.job(released=False, pins=())
    assert [f for f in logs.findings() if f[0] == "pin"] == []


def test_a_pin_of_another_member_is_caught(logs: Logs) -> None:
    logs.job()

    def pin_the_dealer_as_coordinator(entries: Entries) -> Entries:
        for e in entries:
            if e["event"] == MEMBER_HEAD and e["member_role"] == "dealer":
                e["member_role"] = "coordinator"
        return entries

    for p in PARTIES:
        logs.resign(p, pin_the_dealer_as_coordinator)
    caught(logs, "pin", "hospital_a", JOB, "pinned the log of 'dealer' as this job's "
                                           "coordinator")
    caught(logs, "pin", "dealer", JOB, "no party pinned the log head of dealer")


def test_parties_that_applied_different_rules_are_caught(logs: Logs) -> None:
    weaker = {**RULES, "min_cell": 3}
    logs.job(rules={"hospital_b": weaker})
    findings = logs.findings()
    assert ("rules", None, JOB, "the parties applied different rules for this job "
            "(hospital_a: min_cell 10, min_contributors 1, suppress_zero False; hospital_b: "
            "min_cell 3, min_contributors 1, suppress_zero False)") in findings
    assert any(f[0] == "rules" and "agreed rules digests" in f[3] for f in findings)


def test_an_agreed_rules_digest_that_differs_is_caught(logs: Logs) -> None:
    logs.job()

    def other_digest(entries: Entries) -> Entries:
        for e in entries:
            if e["event"] == "session_start":
                e["rules_sha256"] = "cd" * 32
        return entries + [{"event": "rules_agreed", "job": JOB, "member": "hospital_b",
                           "role": "party", "time": 0.0, "digest": "cd" * 32}]

    logs.resign("hospital_b", other_digest)
    logs.logs["hospital_a"].append("rules_agreed", job=JOB, digest="ab" * 32)
    findings = [f for f in logs.findings() if f[0] == "rules"]
    assert any("different agreed rules digests" in f[3] and "hospital_b: cdcdcdcdcdcd" in f[3]
               for f in findings), findings
    assert any("different agreed rules for this job" in f[3] for f in findings), findings
