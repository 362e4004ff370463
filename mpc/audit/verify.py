"""`mpc audit verify`: check members' audit logs against the federation file alone.

Per log: every entry's hash matches its content, its signature verifies under the
member's key in the federation, sequence numbers run 0, 1, 2, ... without gaps or
swaps, and each entry chains to the one before. Across logs: no log was cut short or
rewritten (every head another member recorded, its peers' at the end of a job and the
coordinator's and the dealer's that the parties pin, is in the log as recorded; every
job it took part in has its closing entry), and per job (job_checks.py): same spec and
same rules everywhere, approved by every policy, every message delivered with the same
digest, the dealer's ledger equal to each party's, the coordinator's and the dealer's
logs pinned for every job that released, releases only to recipients, and every
released cell within the rules. The audit shows that the agreed process was followed
by the holders of the registered keys; it cannot show that the parties' inputs were true.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mpc.audit.events import AuditEvent
from mpc.audit.job_checks import check_jobs
from mpc.audit.log import GENESIS, entry_hash
from mpc.audit.model import Finding, MemberLog, Report
from mpc.config.federation import Federation
from mpc.errors import ConfigError


def verify(federation: Federation, paths: list[Path]) -> Report:
    report = Report(federation=federation.source)
    logs: dict[str, MemberLog] = {}
    for path in paths:
        log = _load(path, federation, report)
        if log is None:
            continue
        if log.member in logs:
            report.findings.append(Finding("key", f"{path.name} and {logs[log.member].path.name}"
                                                  " are both logs of this member", log.member))
            continue
        logs[log.member] = log
        report.logs.append({"member": log.member, "role": log.role, "file": path.name,
                            "entries": len(log.entries)})
    _check_heads(logs, federation, report)
    check_jobs(logs, federation, report)
    return report


def _verify_sig(key: Ed25519PublicKey, entry: dict[str, Any]) -> bool:
    try:
        key.verify(base64.b64decode(entry["sig"]), bytes.fromhex(entry["hash"]))
        return True
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False


def _load(path: Path, federation: Federation, report: Report) -> MemberLog | None:
    def finding(check: str, message: str, member: str | None = None) -> None:
        report.findings.append(Finding(check, message, member))

    try:
        raw = path.read_bytes()
    except OSError as exc:
        finding("missing", f"cannot read {path}: {exc.strerror}")
        return None
    lines = raw.split(b"\n")
    torn = lines[-1] != b""  # the last line has no newline: a write was cut off
    entries = []
    for number, line in enumerate(lines[:-1] if not torn else lines, start=1):
        if not line:
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict) or not {"seq", "hash", "sig", "member"} <= set(entry):
                raise ValueError("not an audit entry")
            entries.append(entry)
        except ValueError:
            if torn and number == len(lines):
                continue  # reported below, once the member is known
            finding("truncated", f"{path.name}: line {number} is not a complete entry "
                                 "(a write cut off by a crash)")
    if not entries:
        finding("truncated", f"{path.name} holds no complete entry")
        return None
    member = entries[0]["member"]
    members = federation.members()
    if member not in members:
        finding("key", f"{path.name} is signed as {member!r}, which is not a member of the "
                       "federation: its key is not one the federation registers", member)
        return None
    try:
        keys = members[member].public_keys()
    except ConfigError as exc:
        finding("key", str(exc), member)
        return None
    if not keys:
        finding("key", f"the federation file gives no audit key for {member}", member)
        return None
    if torn:
        finding("truncated", f"{path.name}: the last line is incomplete (a crash mid-write?);"
                             " the entries before it verify", member)
    log = MemberLog(path, member, members[member].role, entries, torn)
    _check_chain(log, keys, report)
    return log


def _signed_by(keys: list[Ed25519PublicKey], entry: dict[str, Any]) -> int | None:
    """Which of a member's keys (oldest first) signed the entry; None: none of them."""
    return next((i for i, key in enumerate(keys) if _verify_sig(key, entry)), None)


def _check_chain(log: MemberLog, keys: list[Ed25519PublicKey], report: Report) -> None:
    m = log.member

    def finding(check: str, message: str) -> None:
        report.findings.append(Finding(check, f"{m}: {message}", m))

    newest = 0  # after a rotation the old key is retired: it signs nothing after the new one
    for e in log.entries:
        if e.get("member") != m:
            finding("chain", f"entry {e['seq']} names member {e.get('member')!r}")
        body = {k: v for k, v in e.items() if k not in ("hash", "sig")}
        if entry_hash(body) != e["hash"]:
            finding("edited", f"entry {e['seq']} ({e.get('event')}) was changed after it was "
                              "written: its content does not match its hash")
        elif (used := _signed_by(keys, e)) is None:
            finding("signature", f"entry {e['seq']} ({e.get('event')}) has a forged signature: "
                                 f"it does not verify under {m}'s registered key"
                                 f"{'s' if len(keys) > 1 else ''}")
        elif used < newest:
            finding("signature", f"entry {e['seq']} ({e.get('event')}) is signed with a key "
                                 f"{m} had replaced before (key {used + 1} of {len(keys)} "
                                 f"after key {newest + 1}): a retired key cannot sign anymore")
        else:
            newest = used
    seqs = [e["seq"] for e in log.entries]
    if seqs != sorted(seqs):
        at = next(i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1])
        finding("order", f"entries are out of order (entry {seqs[at]} comes after entry "
                         f"{seqs[at - 1]}): entries were swapped or moved")
        log.entries.sort(key=lambda e: e["seq"])
        seqs.sort()
    if len(set(seqs)) != len(seqs):
        finding("chain", "some entries appear twice")
    if seqs[0] != 0:
        finding("deleted", f"entries 0 to {seqs[0] - 1} are missing: the start of the log was cut")
    prev_hash, prev_seq = GENESIS if seqs[0] == 0 else None, seqs[0] - 1
    for e in log.entries:
        if e["seq"] > prev_seq + 1:
            gap = (f"entry {prev_seq + 1}" if e["seq"] == prev_seq + 2
                   else f"entries {prev_seq + 1} to {e['seq'] - 1}")
            finding("deleted", f"{gap} missing: deleted from the log")
        elif prev_hash is not None and e.get("prev") != prev_hash:
            finding("chain", f"entry {e['seq']} does not chain to entry {prev_seq}")
        prev_hash, prev_seq = e["hash"], e["seq"]


def _recorded_heads(entry: dict[str, Any]) -> list[Any]:
    """The heads of other members' logs that an entry records, if any."""
    event = entry.get("event")
    if event in (AuditEvent.PEER_HEADS, AuditEvent.PARTY_HEADS):
        heads = entry.get("heads", [])
        return heads if isinstance(heads, list) else [heads]
    return [entry.get("head")] if event == AuditEvent.MEMBER_HEAD else []


def _head_ok(head: Any) -> bool:
    return (isinstance(head, dict) and isinstance(head.get("member"), str)
            and isinstance(head.get("seq"), int) and isinstance(head.get("hash"), str)
            and isinstance(head.get("sig"), str))


def _check_heads(logs: dict[str, MemberLog], federation: Federation, report: Report) -> None:
    """What others recorded of each log's head must be in that log, exactly: else its end
    was cut, or it was rewritten (re-signed) after they recorded it."""
    recorded: dict[str, list[tuple[str, str, dict[str, Any]]]] = defaultdict(list)
    log: MemberLog | None
    for log in logs.values():
        for e in log.entries:
            for head in _recorded_heads(e):
                if not _head_ok(head):
                    report.findings.append(Finding(
                        "chain", f"{log.member}'s entry {e['seq']} ({e.get('event')}) records "
                                 "a malformed log head", log.member, e.get("job")))
                    continue
                recorded[head["member"]].append((log.member, e.get("job", ""), head))
    members = federation.members()
    for member, heads in recorded.items():
        log = logs.get(member)
        if log is None or member not in members:
            continue  # a missing log is reported per job
        keys = members[member].public_keys()
        entries = log.by_seq()
        for recorder, job, head in heads:
            if keys and _signed_by(keys, head) is None:
                report.findings.append(Finding(
                    "signature", f"the head of {member}'s log that {recorder} recorded carries "
                                 "a forged signature", recorder, job))
                continue
            entry = entries.get(head["seq"])
            if head["seq"] > log.last_seq():
                report.findings.append(Finding(
                    "truncated", f"{member}'s log ends at entry {log.last_seq()}, but "
                                 f"{recorder} recorded its entry {head['seq']}: the end of the "
                                 "log was cut", member, job))
            elif entry is None or entry["hash"] != head["hash"] or entry["sig"] != head["sig"]:
                report.findings.append(Finding(
                    "chain", f"{member}'s entry {head['seq']} is not the one {recorder} "
                             "recorded: the log was rewritten after", member, job))
