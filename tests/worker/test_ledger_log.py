"""The ledger is rebuilt from the party's audit log entry by entry: text inside another
entry's field never passes for a release, and a malformed line does not keep the worker
from starting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.log import AuditLog, canonical, iter_entries
from mpc.worker.ledger import EVENT, Ledger, Release

INJECTED = 'hospital_a"release_recorded'


def test_the_ledger_reads_structured_entries_only(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hospital_a.jsonl"
    log = AuditLog(path, Ed25519PrivateKey.generate(), "hospital_a", "party")
    log.append("policy_decision", job="job-00000001", approved=False, parties=[INJECTED],
               reason=f'the spec names "{EVENT}" and {INJECTED}')
    release = Release(job="job-00000002", usecase="u", dataset="treatments",
                      parties=("hospital_a", "hospital_b"), window=None, filters=())
    log.append(EVENT, **release.fields())
    log.append("service_start", listen="127.0.0.1:1")
    with path.open("ab") as fh:
        fh.write(f'not json but "{EVENT}" all the same\n'.encode())
        fh.write(f'["{EVENT}"]\n'.encode())  # JSON, but not an entry
        fh.write(f'{{"event": "{EVENT}", "job": "torn"'.encode())  # a crash mid-write
    with caplog.at_level(logging.WARNING):
        ledger = Ledger.from_log(path)
    assert [r.job for r in ledger.releases] == ["job-00000002"]
    assert sum("is not an audit entry; skipped" in r.message for r in caplog.records) == 2
    assert [e["event"] for e in iter_entries(path)] == ["policy_decision", EVENT,
                                                         "service_start"]


def test_a_malformed_release_entry_is_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hospital_a.jsonl"
    # As an older or a tampered log could hold it: AuditLog refuses to write it now.
    path.write_bytes(canonical({"seq": 0, "member": "hospital_a", "role": "party",
                                "event": EVENT, "note": "no release's fields"}) + b"\n")
    with caplog.at_level(logging.WARNING):
        assert Ledger.from_log(path).releases == []
    assert any("is malformed (KeyError); skipped" in r.message for r in caplog.records)


def test_no_log_yet_is_an_empty_ledger(tmp_path: Path) -> None:
    assert Ledger.from_log(tmp_path / "none.jsonl").releases == []
    assert list(iter_entries(tmp_path / "none.jsonl")) == []
