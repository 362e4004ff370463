"""What a party records about one job, from inside its job process.

Entries are buffered and appended in batches (one fsync each) to the member's own
log, which the worker appends to as well. Every message on the peer mesh becomes
a record with a salted digest both ends compute alike, so an auditor can pair
what one party sent with what the other received without seeing a byte of it. The
records go into one MESSAGES entry per batch, in their place among the other
entries: a job at 40 parties sends about 100,000 messages, and one signature each
would make the audit slow to verify.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from mpc.audit.digests import commit, message_digest
from mpc.audit.events import MESSAGE_RECORD, AuditEvent, check_fields
from mpc.audit.log import AuditLog, Head
from mpc.transport.peer_mesh import WireEvent

BATCH = 512


class JobRecorder:
    def __init__(self, log: AuditLog, job_id: str, party: str) -> None:
        self.log = log
        self.job_id = job_id
        self.party = party
        self._pending: list[tuple[AuditEvent, dict[str, Any]]] = []
        self._messages: list[dict[str, Any]] = []  # since the last entry of another event
        self._lock = threading.Lock()

    def add(self, event: AuditEvent, **fields: Any) -> None:
        """Buffer an entry of this job; refused at once (AuditError) if it lacks a field its
        event requires, not later at the flush."""
        fields = {"job": self.job_id, **fields}
        check_fields(event, fields)
        with self._lock:
            self._close_messages()
            self._pending.append((event, fields))
            full = len(self._pending) >= BATCH
        if full:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            self._close_messages()
            pending, self._pending = self._pending, []
        self.log.append_many(pending)

    def _close_messages(self) -> None:
        """The messages so far become one entry (the lock is held)."""
        if self._messages:
            self._pending.append((AuditEvent.MESSAGES,
                                  {"job": self.job_id, "messages": self._messages}))
            self._messages = []

    def observe(self, event: WireEvent) -> None:
        """Mesh observer: one record per message, with its salted digest, never its bytes."""
        sender, receiver = ((self.party, event.peer) if event.direction == "sent"
                            else (event.peer, self.party))
        record = dict(zip(MESSAGE_RECORD, (
            event.direction, event.peer, event.tag, event.seq, len(event.payload),
            message_digest(self.job_id, sender, receiver, event.seq, event.nonce,
                           event.payload)), strict=True))
        with self._lock:
            self._messages.append(record)
            full = len(self._messages) >= BATCH
        if full:
            self.flush()

    def commit_inputs(self, table_bytes: bytes, dataset_definition: str,
                      openings: Path) -> None:
        """Salted commitments to the input table and to the query that produced it.

        The salts go to a file of this party's own (mode 600), so it can later open a
        commitment to an auditor without the log ever holding anything guessable."""
        table_digest, table_salt = commit("input-table", table_bytes)
        query_digest, query_salt = commit("input-query", dataset_definition.encode())
        self.add(AuditEvent.INPUT_COMMITMENT, table=table_digest, query=query_digest)
        fd = os.open(openings, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(json.dumps({"job": self.job_id, "table_salt": table_salt.hex(),
                                 "query_salt": query_salt.hex(),
                                 "query": dataset_definition}) + "\n")

    def head(self) -> Head:
        self.flush()
        return self.log.head()
