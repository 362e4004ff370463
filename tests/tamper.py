"""Tampering with a finished federation's audit logs, as a member holding its own key can:
shared by the audit tests and the red-team tests of pinned logs."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import GENESIS, canonical, entry_hash, load_signing_key
from mpc.audit.verify import verify
from mpc.config.federation import load_federation

AUDITED_PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
Entries = list[dict[str, Any]]


def run_verify(folder: Path) -> tuple[bool, list[str]]:
    report = verify(load_federation(folder / "federation.toml"),
                    sorted((folder / "logs").glob("*.jsonl")))
    return report.ok, [f"{f.check}: {f.message}" for f in report.findings]


def read(path: Path) -> Entries:
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, entries: Entries) -> None:
    path.write_text("".join(canonical(e).decode() + "\n" for e in entries))


def resign(entries: Entries, key: Ed25519PrivateKey) -> Entries:
    """What a member holding its own key can do: rewrite its log as a consistent chain."""
    out, prev = [], GENESIS
    for seq, e in enumerate(entries):
        body = {k: v for k, v in e.items() if k not in ("hash", "sig")} | {"seq": seq,
                                                                            "prev": prev}
        digest = entry_hash(body)
        out.append(body | {"hash": digest,
                           "sig": base64.b64encode(key.sign(bytes.fromhex(digest))).decode()})
        prev = digest
    return out


def rewrite(case: Path, honest: Path, member: str, change: Callable[[Entries], Entries]) -> None:
    path = case / "logs" / f"{member}.jsonl"
    key = load_signing_key(honest / "certs" / f"{member}.sign.key")
    write(path, resign(change(read(path)), key))


def first(entries: Entries, event: str, **match: Any) -> dict[str, Any]:
    return next(e for e in entries if e["event"] == event
                and all(e.get(k) == v for k, v in match.items()))


def first_message(entries: Entries, **match: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first message record matching `match`, with the messages entry that holds it."""
    return next((e, m) for e in entries if e["event"] == "messages" for m in e["messages"]
                if all(m.get(k) == v for k, v in match.items()))


def assert_caught(case: Path, check: str, *phrases: str) -> None:
    ok, findings = run_verify(case)
    assert not ok
    hits = [f for f in findings if f.startswith(check + ":") and all(p in f for p in phrases)]
    assert hits, f"no {check} finding with {phrases}; got:\n" + "\n".join(findings)


