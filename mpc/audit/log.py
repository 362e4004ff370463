"""Append-only, hash-chained, Ed25519-signed JSON Lines audit log.

Each entry holds the previous entry's hash, so an edit, deletion or reordering
breaks the chain; each is signed with the member's key, so only the key holder
can extend it. Entries are flushed and fsynced before the call returns. A
restarted service continues its chain from the last complete line. Payloads and
shares are never written: callers pass digests, shapes and counters.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.errors import AuditError

GENESIS = "0" * 64


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes that are hashed and signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot load signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"signing key {path} is not an Ed25519 key")
    return key


class AuditLog:
    def __init__(self, path: Path, signing_key: Ed25519PrivateKey, member: str, role: str) -> None:
        self.path = path
        self.member = member
        self.role = role
        self._key = signing_key
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq, self._prev = self._resume()

    @classmethod
    def open(cls, path: Path, signing_key_path: Path, member: str, role: str) -> AuditLog:
        return cls(path, load_signing_key(signing_key_path), member, role)

    def _resume(self) -> tuple[int, str]:
        """Continue after the last complete entry (a torn final line is left for the auditor)."""
        if not self.path.exists():
            return 0, GENESIS
        last = None
        with self.path.open("rb") as fh:
            for line in fh:
                if line.endswith(b"\n"):
                    last = line
        if last is None:
            return 0, GENESIS
        try:
            entry = json.loads(last)
            return int(entry["seq"]) + 1, str(entry["hash"])
        except (ValueError, KeyError) as exc:
            raise AuditError(f"{self.path}: last entry is unreadable ({exc})") from None

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            body = {"seq": self._seq, "time": round(time.time(), 6), "member": self.member,
                    "role": self.role, "event": event, "prev": self._prev, **fields}
            digest = hashlib.sha256(canonical(body)).hexdigest()
            signature = base64.b64encode(self._key.sign(bytes.fromhex(digest))).decode()
            entry = {**body, "hash": digest, "sig": signature}
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False) + "\n"
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            self._seq += 1
            self._prev = digest
            return entry
