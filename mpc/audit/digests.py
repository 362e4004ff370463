"""Digests and commitments that audit entries carry instead of data.

Opened values and index lists have low entropy, so a plain hash of a payload could
be inverted by guessing; every message digest is salted with the 32-byte nonce its
frame carries, and every commitment with a salt its party keeps.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

_DOMAIN = b"mpc-health/v1/"


def message_digest(job_id: str, sender: str, receiver: str, seq: int, nonce: bytes,
                   payload: bytes) -> str:
    """SHA-256(domain, job, sender, receiver, seq, nonce, payload): both ends compute it."""
    h = hashlib.sha256(_DOMAIN + b"message\x00")
    for part in (job_id, sender, receiver):
        h.update(part.encode() + b"\x00")
    h.update(seq.to_bytes(8, "little"))
    h.update(nonce)
    h.update(payload)
    return h.hexdigest()


def commit(label: str, data: bytes, salt: bytes | None = None) -> tuple[str, bytes]:
    """A salted commitment to `data` and the salt that opens it."""
    salt = salt if salt is not None else os.urandom(32)
    h = hashlib.sha256(_DOMAIN + b"commit\x00" + label.encode() + b"\x00" + salt + data)
    return h.hexdigest(), salt


def table_bytes(*arrays: np.ndarray) -> bytes:
    """Canonical bytes of integer tables: little-endian int64, one after another."""
    return b"".join(np.ascontiguousarray(a, dtype="<i8").tobytes() for a in arrays)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_sha256() -> str:
    """A hash of this build's source: every .py and .proto of the installed package."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\x00" + path.read_bytes())
    return h.hexdigest()
