"""Record every message a process sends or receives, for privacy tests.

Enabled only when MPC_CAPTURE_WIRE_DIR is set (tests set it when they start
workers); the worker warns loudly when it is. Each record is one JSON line of
metadata plus the payload in hex, so a test can check what crossed the wire.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from mpc.transport.peer_mesh import WireEvent

ENV = "MPC_CAPTURE_WIRE_DIR"


class WireRecorder:
    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{name}.{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    def record(self, channel: str, event: WireEvent) -> None:
        line = json.dumps({
            "channel": channel, "direction": event.direction, "peer": event.peer,
            "tag": event.tag, "seq": event.seq, "kind": event.kind, "dtype": event.dtype,
            "shape": list(event.shape), "payload": event.payload.hex(),
        })
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")

    def __call__(self, event: WireEvent) -> None:
        self.record("peer", event)


def recorder_from_env(name: str) -> WireRecorder | None:
    folder = os.environ.get(ENV)
    return WireRecorder(Path(folder), name) if folder else None
