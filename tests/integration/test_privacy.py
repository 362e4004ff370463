"""Capture every payload the workers send and every opening: nothing but the
disclosure-controlled table is ever in the clear.

Checked on the wire (what each worker's job process sent, byte for byte):
- no party's own table (values or contributor indicators) appears in any payload;
- no pre-disclosure total, no contributor count, no suppressed value appears;
- no opening during the computation (the sum, or XOR, of the parties' contributions
  to the k-th collective) equals any of those vectors;
- the coordinator receives shares whose sum is exactly (keep, value * keep).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mpc.config.spec import parse_spec
from mpc.synth import generate_treatments
from mpc.transport.capture import ENV
from tests.conftest import Harness, start_federation
from tests.helpers import plaintext_release, spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
# Collectives where every party sends its contribution to every other party; (reduce and
# gather keep the receiver's own share off the wire: their payloads are checked, not opened).
COLLECTIVES = ("all_reduce", "all_gather")


def load_records(folder: Path) -> list[dict]:
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        party = path.name.split(".")[0]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            record["party"] = party
            record["bytes"] = bytes.fromhex(record.pop("payload"))
            records.append(record)
    return records


def as_int64(record: dict) -> np.ndarray | None:
    if record["kind"] != "tensor" or record["dtype"] != "int64":
        return None
    return np.frombuffer(record["bytes"], dtype="<i8")


def openings(records: list[dict], parties: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Rebuild every opening: party p's k-th contribution to a collective, over all p."""
    sent: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for r in records:
        if r["channel"] == "peer" and r["direction"] == "sent" and r["tag"] in COLLECTIVES:
            # each contribution goes to every peer: take the copy sent to the first one
            first_peer = next(p for p in parties if p != r["party"])
            if r["peer"] == first_peer:
                sent[(r["party"], r["tag"])].append(as_int64(r))
    for tag in COLLECTIVES:
        contributions = [sent.get((p, tag), []) for p in parties]
        assert len({len(c) for c in contributions}) == 1, f"parties disagree on {tag} rounds"
        for k in range(len(contributions[0])):
            stacked = np.stack([c[k] for c in contributions])
            yield f"{tag}#{k} (sum)", stacked.sum(axis=0)
            yield f"{tag}#{k} (xor)", np.bitwise_xor.reduce(stacked, axis=0)


def find_leaks(records: list[dict], secrets: Mapping[str, np.ndarray],
               parties: list[str]) -> list[str]:
    """Every place a secret vector shows up in the clear: in a payload or an opening."""
    leaks = []
    for r in records:
        if r["direction"] != "sent":
            continue
        for name, vector in secrets.items():
            if vector.astype("<i8").tobytes() in r["bytes"]:
                leaks.append(f"{r['party']} sent {name} to {r['peer']} ({r['tag']})")
    for label, opened in openings(records, parties):
        for name, vector in secrets.items():
            n = len(vector)
            for offset in range(0, len(opened) - n + 1, n):
                if np.array_equal(opened[offset:offset + n], vector):
                    leaks.append(f"opening {label} revealed {name}")
    return leaks


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, Path]]:
    root = tmp_path_factory.mktemp("privacy")
    capture = root / "wire"
    files = generate_treatments(root / "data", PARTIES, patients_per_party=400, seed=23)
    fed = start_federation(root / "fed", files, ["product-use"], env={ENV: str(capture)})
    try:
        yield Harness(fed, files), capture
    finally:
        fed.stop()


def local_vectors(path: Path, spec) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    df = pd.read_csv(path, dtype=str)
    index = pd.MultiIndex.from_tuples(spec.category_rows(), names=list(spec.group_by))
    counts = df.groupby(list(spec.group_by)).size().reindex(index, fill_value=0)
    values = counts.to_numpy().astype(np.int64)
    return values, (values > 0).astype(np.int64)


def test_nothing_but_the_release_is_in_the_clear(captured: tuple[Harness, Path]) -> None:
    harness, capture = captured
    text = spec_text("product-use", PARTIES, min_cell=10, min_contributors=3)
    spec = parse_spec(text)
    outcome = harness.run(text)
    assert outcome.table is not None
    keep, released, total = plaintext_release(harness.files, spec, outcome.rules)
    suppressed_nonzero = ~keep & (total > 0)
    assert suppressed_nonzero.any(), "the data must have suppressed non-zero cells"

    secrets: dict[str, np.ndarray] = {"the pre-disclosure total": total}
    contributors = np.zeros_like(total)
    for party in PARTIES:
        values, indicator = local_vectors(harness.files[party], spec)
        secrets[f"{party}'s own table"] = values
        secrets[f"{party}'s contributor indicators"] = indicator
        contributors += indicator
    secrets["the contributor counts"] = contributors
    secrets["the suppressed values"] = total[suppressed_nonzero]

    records = load_records(capture)
    peer = [r for r in records if r["channel"] == "peer" and r["direction"] == "sent"]
    assert {r["party"] for r in peer} == set(PARTIES)
    assert len(peer) > 50, "a comparison takes dozens of rounds; capture looks incomplete"
    # The XOR reconstruction lines up: some openings are single bits (B2A's masked bits).
    bit_openings = [o for label, o in openings(records, PARTIES)
                    if label.endswith("(xor)") and set(np.unique(o)) <= {0, 1}]
    assert bit_openings, "no opening reconstructed as bits: reconstruction is off"

    assert find_leaks(records, secrets, PARTIES) == []

    # The coordinator gets one share of keep and of value*keep from every party, and
    # their sum is exactly the released table; no single share is the table itself.
    to_coordinator = [r for r in records if r["channel"] == "coordinator"]
    assert sorted({r["party"] for r in to_coordinator}) == PARTIES
    assert {r["tag"] for r in to_coordinator} == {"release/keep", "release/value"}
    by_tag = defaultdict(list)
    for r in to_coordinator:
        by_tag[r["tag"]].append(as_int64(r))
    np.testing.assert_array_equal(np.sum(by_tag["release/keep"], axis=0), keep.astype(int))
    np.testing.assert_array_equal(np.sum(by_tag["release/value"], axis=0), released)
    for share in by_tag["release/value"]:
        assert not np.array_equal(share, released)
    np.testing.assert_array_equal(outcome.table.value, released)

    # No share and no input value is ever written to an audit log: no payload's bytes,
    # no share element (random 64-bit numbers), no party's table.
    logs = "".join(p.read_text() for p in harness.fed.logs.glob("*.jsonl"))
    assert "job_end" in logs and "\"event\":\"messages\"" in logs
    # (payloads of random shares: 16 bytes with many distinct values, unlike zeros)
    payloads = [r for r in records if r["kind"] == "tensor" and len(set(r["bytes"][:16])) >= 8]
    assert payloads
    for r in payloads:
        assert r["bytes"][:16].hex() not in logs
        for element in as_int64(r)[:50] if r["dtype"] == "int64" else []:
            if abs(int(element)) > 10**9:
                assert str(int(element)) not in logs
    for name, vector in secrets.items():
        assert json.dumps(vector.tolist()) not in logs, name
        assert json.dumps(vector.tolist(), separators=(",", ":")) not in logs, name

    # Nor in the services' own logs (stdout and stderr of workers, job processes, dealer),
    # and no private key material anywhere.
    service_logs = "".join(p.read_text(errors="replace")
                           for p in harness.fed.service_logs.glob("*.log"))
    assert "listening on" in service_logs
    for r in payloads:
        assert r["bytes"][:16].hex() not in service_logs
        for element in as_int64(r)[:50] if r["dtype"] == "int64" else []:
            if abs(int(element)) > 10**9:
                assert str(int(element)) not in service_logs
    everything = logs + service_logs
    for key in harness.fed.certs.glob("*.key"):
        for line in key.read_text().splitlines():
            if not line.startswith("-----"):
                assert line not in everything, f"material of {key.name} in a log"


def test_leak_finder_catches_leaks() -> None:
    """The checks above can fail: a table sent in the clear, or opened, is reported."""
    table = np.array([5, 0, 12, 3], dtype=np.int64)
    rng = np.random.default_rng(0)
    share_a = rng.integers(-2**62, 2**62, size=4)
    share_b = table - share_a
    records = [
        {"party": "a", "peer": "b", "tag": "send", "direction": "sent", "channel": "peer",
         "kind": "tensor", "dtype": "int64", "bytes": table.astype("<i8").tobytes()},
        {"party": "a", "peer": "b", "tag": "all_reduce", "direction": "sent",
         "channel": "peer", "kind": "tensor", "dtype": "int64",
         "bytes": share_a.astype("<i8").tobytes()},
        {"party": "b", "peer": "a", "tag": "all_reduce", "direction": "sent",
         "channel": "peer", "kind": "tensor", "dtype": "int64",
         "bytes": share_b.astype("<i8").tobytes()},
    ]
    leaks = find_leaks(records, {"the table": table}, ["a", "b"])
    assert any("a sent the table" in leak for leak in leaks)
    assert any("opening all_reduce#0 (sum) revealed the table" in leak for leak in leaks)
