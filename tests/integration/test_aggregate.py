"""Real processes on loopback: the released table equals a plaintext pandas computation."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mpc.config.spec import parse_spec
from tests.conftest import FIVE, Harness
from tests.helpers import plaintext_release, spec_text

MEASURES = ["count", "count_distinct:pseudonym", "sum:cycles"]


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("n_parties", [3, 5])
def test_release_equals_plaintext(federation5: Harness, measure: str, n_parties: int) -> None:
    parties = FIVE[:n_parties]
    name = "product-use" if n_parties == 5 else "product-use-3"
    text = spec_text(name, parties, measure=measure, min_cell=10,
                     min_contributors=min(3, n_parties))
    outcome = federation5.run(text)
    table = outcome.table
    assert table is not None
    keep, value, total = plaintext_release(federation5.files, parse_spec(text), outcome.rules)
    np.testing.assert_array_equal(table.keep, keep)
    np.testing.assert_array_equal(table.value, value)
    # The data has cells of every kind, so the comparison above means something.
    assert keep.sum() > 0 and (~keep).sum() > 0, "expected both released and suppressed cells"
    assert ((total > 0) & (total < 10)).any() or (~keep & (total >= 10)).any()
    rows = table.rows()
    assert [r["value"] for r in rows if not r["suppressed"]] == list(value[keep])
    assert all(r["value"] is None for r in rows if r["suppressed"])


def test_zero_cells_suppressed_when_asked(federation5: Harness) -> None:
    text = spec_text("product-use-3", FIVE[:3], suppress_zero=True, min_cell=5)
    outcome = federation5.run(text)
    assert outcome.table is not None
    _, _, total = plaintext_release(federation5.files, parse_spec(text), outcome.rules)
    assert (total == 0).any()
    assert not outcome.table.keep[total == 0].any()
    np.testing.assert_array_equal(outcome.table.keep, total >= 5)


def test_mpc_run_shows_each_partys_phases_as_plain_lines(federation5: Harness,
                                                        tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_bytes(spec_text("product-use-3", FIVE[:3]))
    proc = subprocess.run([sys.executable, "-m", "mpc", "run", str(spec), "--federation",
                           str(federation5.fed.federation_file), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    order = ["policy approved", "local table", "ready", "connected", "sharing", "computing",
             "disclosure control", "released", "done"]
    for party in FIVE[:3]:
        seen = [line.split(f"{party}: ", 1)[1].split(" (")[0]
                for line in proc.stderr.splitlines() if f"] {party}: " in line]
        assert [p for p in seen if p in order] == order, seen
    assert (tmp_path / "out" / "product-use-3" / "result.csv").exists()


# ---- one inbound port per member ------------------------------------------------------------

def _listening_tcp() -> dict[int, int]:
    """inode -> port of every listening TCP socket on this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                found[int(fields[9])] = int(fields[1].rpartition(":")[2], 16)
    return found


def _local_sockets() -> dict[int, str]:
    """inode -> path of every bound Unix socket."""
    found = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8:
            found[int(fields[6])] = fields[7]
    return found


def _tree(root: int) -> set[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (name) state ppid ...": the name may hold spaces and parentheses
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
        except OSError:
            continue  # it ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += children.get(pid, [])
    return tree


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    except OSError:
        pass  # it ended meanwhile
    return inodes


def test_a_job_listens_on_no_port_of_its_own(federation5: Harness) -> None:
    """While a job runs, every worker's process tree listens on the worker's port only;
    its job process takes its peers on a local socket, behind that port."""
    fed = federation5.fed
    parties = FIVE[:3]
    ports = {p: int(fed.addresses[p].rpartition(":")[2]) for p in parties}
    seen_ports: dict[str, set[int]] = {p: set() for p in parties}
    job_sockets: dict[str, set[str]] = {p: set() for p in parties}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            tcp, unix = _listening_tcp(), _local_sockets()
            for party in parties:
                worker = fed.procs[party].pid
                for pid in _tree(worker):
                    inodes = _socket_inodes(pid)
                    seen_ports[party] |= {tcp[i] for i in inodes if i in tcp}
                    if pid != worker:
                        job_sockets[party] |= {unix[i] for i in inodes if i in unix
                                               and "/mpc-peers-" in unix[i]}
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        outcome = federation5.run(spec_text("product-use-3", parties))
    finally:
        done.set()
        sampler.join()
    assert outcome.table is not None
    assert seen_ports == {p: {ports[p]} for p in parties}
    # The sampling did see each job process, listening on its local socket.
    assert all(len(job_sockets[p]) == 1 for p in parties), job_sockets
