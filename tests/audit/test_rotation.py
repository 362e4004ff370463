"""Key rotation: a member's log signed by its old audit key, then by its new one,
verifies when the federation lists both; an entry under a key it does not list is still
a forged signature, and the retired key cannot sign after the new one."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mpc.audit.events import AuditEvent
from mpc.audit.log import AuditLog
from mpc.audit.verify import verify
from mpc.config.federation import INLINE_KEY, load_federation


def inline(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return INLINE_KEY + base64.b64encode(raw).decode()


def federation(root: Path, keys: list[Ed25519PrivateKey]) -> Path:
    listed = ", ".join(f'"{inline(k)}"' for k in keys)
    path = root / f"federation-{len(keys)}.toml"
    path.write_text('ca = "ca.pem"\n[coordinator]\nname = "coordinator"\n'
                    '[dealer]\nname = "dealer"\naddress = "127.0.0.1:7100"\n'
                    '[parties.hospital_a]\naddress = "127.0.0.1:7101"\n'
                    f"signing_public_keys = [{listed}]\n", encoding="utf-8")
    return path


def rotated_log(root: Path, old: Ed25519PrivateKey, new: Ed25519PrivateKey) -> Path:
    """Three entries under the old key, then (the worker restarted with its new key) two."""
    path = root / "hospital_a.jsonl"
    before = AuditLog(path, old, "hospital_a", "party")
    before.append(AuditEvent.SERVICE_START, listen="127.0.0.1:7101", cert_sha256="a" * 64)
    before.append(AuditEvent.JOB_RECEIVED, job="job-0123456789", coordinator="coordinator")
    before.append(AuditEvent.SERVICE_STOP)
    after = AuditLog(path, new, "hospital_a", "party")
    after.append(AuditEvent.SERVICE_START, listen="127.0.0.1:7101", cert_sha256="b" * 64)
    after.append(AuditEvent.SERVICE_STOP)
    return path


def signature_findings(fed: Path, log: Path) -> list[str]:
    report = verify(load_federation(fed), [log])
    return [f.message for f in report.findings if f.check == "signature"]


def test_a_log_across_a_rotation_verifies_with_both_keys(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    log = rotated_log(tmp_path, old, new)
    assert signature_findings(federation(tmp_path, [old, new]), log) == []
    report = verify(load_federation(federation(tmp_path, [old, new])), [log])
    assert report.logs[0]["entries"] == 5


def test_with_the_old_key_only_the_first_new_entry_is_forged(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    log = rotated_log(tmp_path, old, new)
    found = signature_findings(federation(tmp_path, [old]), log)
    assert found[0] == ("hospital_a: entry 3 (service_start) has a forged signature: it does "
                        "not verify under hospital_a's registered key")
    assert len(found) == 2  # entries 3 and 4, none before


def test_a_key_not_listed_is_still_forged(tmp_path: Path) -> None:
    old, new, other = (Ed25519PrivateKey.generate() for _ in range(3))
    log = rotated_log(tmp_path, old, new)
    found = signature_findings(federation(tmp_path, [old, other]), log)
    assert len(found) == 2 and all("forged signature" in m for m in found)
    assert "registered keys" in found[0]


def test_the_retired_key_cannot_sign_after_the_new_one(tmp_path: Path) -> None:
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    log = rotated_log(tmp_path, old, new)
    AuditLog(log, old, "hospital_a", "party").append(AuditEvent.SERVICE_STOP)  # old key, again
    found = signature_findings(federation(tmp_path, [old, new]), log)
    assert len(found) == 1 and "entry 5 (service_stop) is signed with a key hospital_a had " \
        "replaced" in found[0]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["seq"] for e in entries] == [0, 1, 2, 3, 4, 5]
