"""Append-only, hash-chained, Ed25519-signed JSON Lines audit log.

Each entry holds the previous entry's hash, so an edit, deletion or reordering
breaks the chain; each is signed with the member's key, so only the key holder
can extend it. Several processes of one member (a worker and its job processes)
append to the same file: an exclusive lock around read-tail-append keeps one
chain, and every batch is flushed and fsynced before the call returns. A torn
last line (a crash mid-write) is left alone: the verifier reports it as a
truncated log, and the next entry continues from the last complete one.
Payloads and shares are never written: callers pass digests, shapes and counters.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.events import AuditEvent, check_fields
from mpc.config.keys import read_private_key
from mpc.errors import AuditError

log = logging.getLogger(__name__)
GENESIS = "0" * 64
RESERVED = frozenset({"seq", "time", "member", "role", "event", "prev", "hash", "sig"})
_TAIL_BYTES = 1 << 16


def canonical(entry: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(body)).hexdigest()


def load_signing_key(path: Path, source: str = "config") -> Ed25519PrivateKey:
    data = read_private_key(path, source, "signing.key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise AuditError(f"cannot load signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"signing key {path} is not an Ed25519 key")
    return key


@dataclass(frozen=True)
class Head:
    """The latest entry of a log: what peers record so a cut-off tail is caught."""

    member: str
    seq: int
    hash: str
    sig: str

    def as_dict(self) -> dict[str, Any]:
        return {"member": self.member, "seq": self.seq, "hash": self.hash, "sig": self.sig}


def iter_entries(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of a member's audit log, parsed: what a service rebuilds its state from.

    Every complete line is read as JSON and only its structured fields count, so text
    inside a field (a name, a reason) can never pass for an entry. A torn last line is left
    out; a line that is not a JSON object is skipped with a warning instead of stopping the
    service (`mpc audit verify` reports it). Chain and signatures are not checked here: this
    is the member reading its own log; auditors verify it.
    """
    if not path.exists():
        return
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                return  # a write cut off by a crash: not an entry
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                log.warning("%s: line %d is not an audit entry; skipped", path, number)
                continue
            yield entry


def _ends_with_newline(fh: Any) -> bool:
    fh.seek(-1, os.SEEK_END)
    return fh.read(1) == b"\n"


def _last_complete_line(fh: Any) -> bytes | None:
    size = fh.seek(0, os.SEEK_END)
    start = max(0, size - _TAIL_BYTES)
    while True:
        fh.seek(start)
        data = fh.read(size - start)
        end = data.rfind(b"\n")
        if end == -1:
            if start == 0:
                return None
            start = max(0, start - _TAIL_BYTES)
            continue
        begin = data.rfind(b"\n", 0, end) + 1
        if begin == 0 and start > 0:
            start = max(0, start - _TAIL_BYTES)
            continue
        return data[begin:end]


class AuditLog:
    def __init__(self, path: Path, signing_key: Ed25519PrivateKey, member: str, role: str) -> None:
        self.path = path
        self.member = member
        self.role = role
        self._key = signing_key
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)

    @classmethod
    def open(cls, path: Path, signing_key_path: Path, member: str, role: str) -> AuditLog:
        return cls(path, load_signing_key(signing_key_path), member, role)

    def append(self, event: AuditEvent, **fields: Any) -> dict[str, Any]:
        return self.append_many([(event, fields)])[-1]

    def append_many(self, events: Iterable[tuple[AuditEvent, dict[str, Any]]]
                    ) -> list[dict[str, Any]]:
        """Append entries as one batch: one lock, one write, one fsync. An entry with a field
        of the log's own, or without a field its event requires, is refused (AuditError)
        before anything of the batch is written."""
        events = list(events)
        if not events:
            return []
        for event, fields in events:
            if RESERVED & fields.keys():
                raise AuditError(f"audit fields {sorted(RESERVED & fields.keys())} "
                                 "are the log's own")
            check_fields(event, fields)
        with self._lock, open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # other processes of this member append too
            try:
                seq, prev = self._resume(fh)
                lines, entries = [], []
                if fh.seek(0, os.SEEK_END) and not _ends_with_newline(fh):
                    lines.append(b"\n")  # end a torn line (a crash mid-write) where it is
                for event, fields in events:
                    body = {"seq": seq, "time": round(time.time(), 6), "member": self.member,
                            "role": self.role, "event": str(event), "prev": prev, **fields}
                    digest = entry_hash(body)
                    sig = base64.b64encode(self._key.sign(bytes.fromhex(digest))).decode()
                    entry = {**body, "hash": digest, "sig": sig}
                    entries.append(entry)
                    lines.append(canonical(entry) + b"\n")
                    seq, prev = seq + 1, digest
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return entries

    def _resume(self, fh: Any) -> tuple[int, str]:
        last = _last_complete_line(fh)
        if last is None:
            return 0, GENESIS
        try:
            entry = json.loads(last)
            return int(entry["seq"]) + 1, str(entry["hash"])
        except (ValueError, KeyError) as exc:
            raise AuditError(f"{self.path}: last entry is unreadable ({exc})") from None

    def head(self) -> Head:
        with self._lock, open(self.path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                last = _last_complete_line(fh)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        if last is None:
            raise AuditError(f"{self.path} is empty")
        entry = json.loads(last)
        return Head(self.member, int(entry["seq"]), entry["hash"], entry["sig"])
