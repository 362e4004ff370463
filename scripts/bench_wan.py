"""Benchmark the secure aggregate with disclosure control over links with latency.

    python scripts/bench_wan.py [--rtt 0,10,50,100] [--parties 3,5] [--cells 45,10000]

Each run is mpc.testing.run_local_parties (one process per party, the project's gRPC
mesh with mutual TLS, a real dealer) with a latency relay (mpc/testing/relay.py) on every
peer link and on the dealer link. It prints, per number of parties and cells, the time of
the MPC phase (sharing to opening, the slowest party) at each round-trip time, and the
number of sequential communication rounds the engine counted (mpc/engine/rounds.py),
with the operations that cost the most of them. The extra time at RTT r is at least
rounds x r / 2: fewer rounds is what makes a job fast over a WAN.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpc.testing import run_local_parties  # noqa: E402

MIN_CELL = 10
SEED = 20261204


def aggregate_job(ctx: Any, cells: int, seed: int) -> tuple[float, int]:
    """A party's side: its table in, disclosure control, the release opened to party 0."""
    from mpc.config.spec import DisclosureRules
    from mpc.protocols.aggregate import aggregate

    counts = np.random.default_rng(seed + ctx.rank).poisson(4, cells)
    values = torch.tensor(counts, dtype=torch.long)
    start = time.perf_counter()
    released = aggregate(ctx, values, values, DisclosureRules(min_cell=MIN_CELL,
                                                              min_contributors=2))
    opened = ctx.open_to(released.value, 0)
    seconds = time.perf_counter() - start
    return seconds, int(opened.sum()) if opened is not None else -1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt", default="0,10,50,100", help="Round-trip times in ms.")
    parser.add_argument("--parties", default="3,5")
    parser.add_argument("--cells", default="45,10000")
    args = parser.parse_args()
    rtts = [float(x) for x in args.rtt.split(",")]
    print(f"{'parties':>7} {'cells':>7} " + " ".join(f"{f'{r:g} ms':>9}" for r in rtts)
          + f" {'rounds':>7}  {'dealer':>6}  where the rounds go")
    for parties in (int(x) for x in args.parties.split(",")):
        for cells in (int(x) for x in args.cells.split(",")):
            times, checks, rounds = [], set(), []
            for rtt in rtts:
                counted: list[dict[str, Any]] = []
                results = run_local_parties(aggregate_job, parties, args=(cells, SEED),
                                            rtt_ms=rtt, rounds=counted, timeout_s=1800)
                times.append(max(seconds for seconds, _ in results))
                checks.add(results[0][1])
                rounds.append(counted[0])
            assert len(checks) == 1, f"results differ between round-trip times: {checks}"
            assert len({r["rounds"] for r in rounds}) == 1
            top = collections.Counter(rounds[0]["by_operation"]).most_common(3)
            where = ", ".join(f"{op or '(untagged)'} {n}" for op, n in top)
            print(f"{parties:>7} {cells:>7,} " + " ".join(f"{t:>7.2f} s" for t in times)
                  + f" {rounds[0]['rounds']:>7} {rounds[0]['dealer_round_trips']:>7}  {where}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
