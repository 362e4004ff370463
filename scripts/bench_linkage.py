"""Benchmark linkage: this project's protocol against openmined-psi, in one run.

    python scripts/bench_linkage.py [--persons 100000] [--big 1000000] [--skip-big]

Two parties with `persons` each, half of them shared. Ours: the whole linkage protocol
(ristretto255 blinding with both cores, exchange over the mutual-TLS mesh, matching at the
dealer, masked rows, and the 3 x 3 cross table by Beaver matmul with disclosure control),
two party processes and the dealer on this machine, timed from the start of the protocol
to the opened table (the slower party). openmined-psi: the intersection *size* alone on the
same sets (client and server in one process, as its own benchmarks do), in a virtual
environment of its own, since it pins a protobuf that CrypTen's onnx cannot use.
The last line reads ratio_vs_openmined=<our time / its time>.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OPENMINED = "openmined-psi==2.0.6"


def people(persons: int) -> tuple[list[str], list[str]]:
    """Left and right pseudonyms, half of each side shared with the other."""
    left = [f"person-{i}" for i in range(persons)]
    right = [f"person-{i}" for i in range(persons // 2, persons // 2 + persons)]
    return left, right


def ours(ctx: Any, io: Any, persons: int) -> dict[str, float]:
    """One party of the linkage (runs in each party's process)."""
    from mpc.config.spec import DisclosureRules
    from mpc.protocols.linkage import cross_table, linkage_shares

    ids = people(persons)[io.rank]
    cells = np.arange(len(ids)) % 3
    started = time.perf_counter()
    shares = linkage_shares(io, ids, cells, (3, 3), persons)
    released = cross_table(ctx, shares, DisclosureRules(min_cell=10, suppress_zero=True))
    opened = ctx.open_to(released.value, 0)
    seconds = time.perf_counter() - started
    linked = int(opened[-1]) if opened is not None else None
    return {"seconds": seconds, "linked": linked}


def run_ours(persons: int) -> tuple[float, int]:
    from mpc.testing import run_local_parties

    results = run_local_parties(ours, 2, args=(persons,), with_io=True, timeout_s=3600)
    return max(r["seconds"] for r in results), int(results[0]["linked"])


OPENMINED_SCRIPT = """
import sys, time
import private_set_intersection.python as psi
n = int(sys.argv[1])
left = [f"person-{i}" for i in range(n)]
right = [f"person-{i}" for i in range(n // 2, n // 2 + n)]
started = time.perf_counter()
client = psi.client.CreateWithNewKey(True)
server = psi.server.CreateWithNewKey(True)
setup = server.CreateSetupMessage(0.0, len(left), right, psi.DataStructure.RAW)
response = server.ProcessRequest(client.CreateRequest(left))
size = client.GetIntersectionSize(setup, response)
print(time.perf_counter() - started, size)
"""


def run_openmined(persons: int, folder: Path) -> tuple[float, int]:
    env = folder / "openmined-venv"
    python = env / "bin" / "python"
    if not python.exists():
        venv.create(env, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", OPENMINED], check=True)
    out = subprocess.run([str(python), "-c", OPENMINED_SCRIPT, str(persons)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    expected = args.persons // 2
    with tempfile.TemporaryDirectory(prefix="bench-linkage-") as tmp:
        theirs, their_size = run_openmined(args.persons, Path(tmp))
        print(f"openmined-psi {args.persons:,} x {args.persons:,}: intersection size "
              f"{their_size:,} in {theirs:.1f} s", flush=True)
        mine, linked = run_ours(args.persons)
        print(f"ours          {args.persons:,} x {args.persons:,}: linked {linked:,} and a "
              f"3 x 3 cross table in {mine:.1f} s", flush=True)
        if linked != expected or their_size != expected:
            print(f"MISMATCH: expected {expected:,} linked persons", flush=True)
            return 1
        if not args.skip_big:
            big, big_linked = run_ours(args.big)
            print(f"ours          {args.big:,} x {args.big:,}: linked {big_linked:,} and the "
                  f"cross table in {big:.1f} s", flush=True)
            if big_linked != args.big // 2:
                print("MISMATCH in the large run", flush=True)
                return 1
    print(f"ratio_vs_openmined={mine / theirs:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
