from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import GENESIS, AuditLog, canonical


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_entries_are_chained_signed_and_resume_after_restart(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, key, "hospital_a", "party")
    log.append("service_start", listen="127.0.0.1:1")
    log.append("job_received", job="j1", coordinator="coordinator")
    AuditLog(path, key, "hospital_a", "party").append("job_end", job="j1")  # a restart
    entries = read(path)
    assert [e["seq"] for e in entries] == [0, 1, 2]
    prev = GENESIS
    for e in entries:
        body = {k: v for k, v in e.items() if k not in ("hash", "sig")}
        assert e["prev"] == prev
        assert hashlib.sha256(canonical(body)).hexdigest() == e["hash"]
        key.public_key().verify(base64.b64decode(e["sig"]), bytes.fromhex(e["hash"]))
        prev = e["hash"]
    assert path.stat().st_mode & 0o077 == 0


def test_a_torn_write_is_ended_and_the_chain_continues(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "a.jsonl"
    log = AuditLog(path, key, "hospital_a", "party")
    log.append("service_start")
    log.append("job_received", job="j1", coordinator="coordinator")
    path.write_bytes(path.read_bytes()[:-25])  # a crash in the middle of the second write
    AuditLog(path, key, "hospital_a", "party").append("service_start")  # the restart
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and not lines[1].endswith("}")  # the torn line stays, ended
    restarted = json.loads(lines[2])
    assert restarted["seq"] == 1 and restarted["prev"] == json.loads(lines[0])["hash"]


def test_reserved_fields_are_refused(tmp_path: Path) -> None:
    import pytest

    from mpc.errors import AuditError

    log = AuditLog(tmp_path / "a.jsonl", Ed25519PrivateKey.generate(), "hospital_a", "party")
    with pytest.raises(AuditError, match="log's own"):
        log.append("message", seq=3)
