"""One vocabulary of audit events (mpc/audit/events.py): every writer and reader in mpc/
names events by `AuditEvent` members, never by string literals, and a write that lacks a
field its event requires is refused at once."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.events import REQUIRED_FIELDS, AuditEvent, check_fields
from mpc.audit.log import AuditLog
from mpc.audit.recorder import JobRecorder
from mpc.errors import AuditError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mpc"
EVENTS = {e.value for e in AuditEvent}
WRITERS = {"append", "add", "append_many", "_record", "_audit"}  # AuditLog, JobRecorder, ...
READERS = {"all", "events", "first"}  # mpc/audit/job_checks.py JobView
AUDIT_RECEIVERS = ("audit", "log", "record")  # what an audit object's name holds


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) \
        else None


def _literals(node: ast.AST) -> list[str]:
    """A string literal, or the string literals of a tuple, list or set display."""
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for e in node.elts if (s := _literal(e)) is not None]
    s = _literal(node)
    return [] if s is None else [s]


def _is_event_key(node: ast.AST) -> bool:
    """`x.get("event")`, `x["event"]`, or a variable named `event`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "get" and node.args and _literal(node.args[0]) == "event":
        return True
    if isinstance(node, ast.Subscript) and _literal(node.slice) == "event":
        return True
    return isinstance(node, ast.Name) and node.id == "event"


def offences(source: str) -> list[tuple[int, str]]:
    """(line, what) for every audit event spelled as a string literal in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            receiver = ast.unparse(node.func.value).lower() \
                if isinstance(node.func, ast.Attribute) else ""
            first = node.args[0] if node.args else None
            if name in WRITERS and (s := _literal(first)) is not None and (
                    node.keywords or name.startswith("_") or s in EVENTS
                    or any(r in receiver for r in AUDIT_RECEIVERS)):
                found.append((node.lineno, f"{name}({s!r}, ...)"))
            if name == "append_many" and isinstance(first, ast.List | ast.Tuple):
                for item in first.elts:
                    if isinstance(item, ast.Tuple) and item.elts and \
                            (s := _literal(item.elts[0])) is not None:
                        found.append((item.lineno, f"append_many([({s!r}, ...)])"))
            if name in READERS:
                found += [(node.lineno, f"{name}(..., {s!r})")
                          for arg in node.args if (s := _literal(arg)) in EVENTS]
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_event_key(o) for o in operands):
                found += [(node.lineno, f"event compared with {s!r}")
                          for o in operands for s in _literals(o)]
        elif isinstance(node, ast.Assign | ast.AnnAssign) and \
                (s := _literal(node.value)) in EVENTS:
            found.append((node.lineno, f"a name for {s!r}"))  # EVENT = "release_recorded"
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if key is not None and _literal(key) == "event" and \
                        (s := _literal(value)) is not None:
                    found.append((node.lineno, f'{{"event": {s!r}}}'))
    return found


def test_no_module_spells_an_audit_event_as_a_string() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("mpc", "proto") or rel == Path("mpc/audit/events.py"):
            continue
        found += [f"{rel}:{line}: {what}" for line, what in offences(path.read_text())]
    assert not found, ("audit events spelled as string literals; use mpc.audit.events."
                       "AuditEvent:\n" + "\n".join(found))


def test_the_scan_finds_what_it_looks_for() -> None:
    bad = '''
self.audit.append("job_received", job=j)
audit.add("release", recipient=r)
log.append_many([("service_start", {})])
self._record("job_end", job=j)
audit.append("something_new")
if e.get("event") == "policy_decision": pass
if entry["event"] in ("peer_heads", "job_aborted"): pass
event = e.get("event"); ok = event != "job_end"
view.all("session_start"); view.events(member, "correlation")
entries.append({"event": "release_recorded"})
EVENT = "release_recorded"
'''
    lines = sorted({line for line, _ in offences(bad)})
    assert lines == list(range(2, 13)), offences(bad)
    fine = '''
lines.append("  none")
words.append(f"{n} rows")
self.audit.append(AuditEvent.JOB_RECEIVED, job=j)
if e.get("event") == AuditEvent.JOB_RECEIVED: pass
if e.get("kind") == "release": pass
view.all(AuditEvent.RESULT)
status = "aborted"
'''
    assert offences(fine) == []


def test_every_event_has_its_required_fields_and_keeps_its_name() -> None:
    assert set(REQUIRED_FIELDS) == set(AuditEvent)
    assert all(isinstance(f, frozenset) for f in REQUIRED_FIELDS.values())
    # The names are what existing logs hold: renaming one would break their verification.
    assert {
        "service_start", "service_stop", "job_received", "job_replay_refused",
        "policy_decision", "job_start", "job_aborted", "release_recorded", "member_head",
        "session_start", "rules_agreed", "message", "messages", "input_commitment", "release",
        "result",
        "dealer_ledger", "job_end", "peer_heads", "job_submitted", "release_received",
        "party_heads", "job_joined_first", "party_joined", "join_refused", "correlation",
        "party_left", "points_received", "link_outcome"} == EVENTS


def test_a_write_without_a_required_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "hospital_a.jsonl"
    log = AuditLog(path, Ed25519PrivateKey.generate(), "hospital_a", "party")
    with pytest.raises(AuditError, match="'job_received' needs the field.s. coordinator"):
        log.append(AuditEvent.JOB_RECEIVED, job="j1")
    with pytest.raises(AuditError, match="'job_received' needs the field.s. coordinator"):
        log.append("job_received", job="j1")  # the plain name is the same event
    with pytest.raises(AuditError, match="'party_left' needs the field.s. requests, served"):
        log.append_many([(AuditEvent.SERVICE_START, {}),
                         (AuditEvent.PARTY_LEFT, {"job": "j1", "party": "hospital_b"})])
    assert path.read_bytes() == b""  # nothing of a refused batch is written

    recorder = JobRecorder(log, "j1", "hospital_a")
    with pytest.raises(AuditError, match="'release' needs the field.s. recipient"):
        recorder.add(AuditEvent.RELEASE, coordinator="coordinator")
    recorder.add(AuditEvent.RELEASE, recipient="hospital_b")  # the recorder adds `job`
    recorder.flush()
    log.append(AuditEvent.JOB_RECEIVED, job="j2", coordinator="coordinator")
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["job"]) for e in entries] == [("release", "j1"),
                                                          ("job_received", "j2")]


def test_names_not_declared_are_not_checked() -> None:
    check_fields("note", {})  # tests fabricate foreign entries; no service writes one
    check_fields(AuditEvent.SERVICE_STOP, {})
    with pytest.raises(AuditError, match="'message' needs .* digest, dir, .*no fields"):
        check_fields(AuditEvent.MESSAGE, {})
