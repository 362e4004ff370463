"""Benchmark the MPC phase of a distribution job against an aggregate of the same groups.

    python scripts/bench_distribution.py [--parties 5] [--sizes 45x20,1000x50]

For each size (groups x bins), each party holds a random histogram (events and censored
episodes per group and bin) and the parties run, over the project's engine (gRPC peer mesh
with mutual TLS, dealer-backed correlations, mpc.testing.run_local_parties):

- distribution, censored: Kaplan-Meier curves and quartiles (protocols/distribution.py);
- distribution, uncensored: the share still going and exact quartiles;
- aggregate: the count per group with disclosure control (protocols/aggregate.py), the
  peer run in the same process pool on the same machine.

Each party times from just before the sharing to just after opening the release to party
0; the time is the maximum over parties, rounds are CrypTen's communication rounds at
party 0. Printed: seconds, rounds, and the ratio of each distribution run to the
aggregate's time. Party 0 checks the released n against numpy.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

SEED = 20261202
QUANTILES = (2500, 5000, 7500)
TIMEOUT_S = 3600.0


def histogram(rank: int, groups: int, bins: int) -> np.ndarray:
    rng = np.random.default_rng(SEED + rank)
    return rng.poisson(2.0, size=(groups, bins, 2)).astype(np.int64)


def program(ctx: Any, job: str, groups: int, bins: int) -> tuple[float, int, int | None]:
    """One party's run: (seconds, rounds, sum of the released n at party 0)."""
    import crypten
    import torch

    from mpc.config.rules import DisclosureRules
    from mpc.protocols.aggregate import aggregate
    from mpc.protocols.distribution import Layout, distribution

    rules = DisclosureRules(min_cell=10)
    local = torch.from_numpy(histogram(ctx.rank, groups, bins))
    crypten.cfg.communicator.verbose = True
    comm = crypten.communicator.get()
    comm.reset_communication_stats()
    start = time.perf_counter()
    if job == "aggregate":
        counts = local.sum((1, 2))
        released = aggregate(ctx, counts, counts, rules)
        n_index = slice(None)
    else:
        layout = Layout(tuple(range(0, 30 * bins, 30)), QUANTILES)
        released = distribution(ctx, local, layout, rules, censored=job == "censored")
        n_index = slice(0, None, layout.per_group)
    opened = ctx.open_to(released.value, 0)
    seconds = time.perf_counter() - start
    rounds = int(comm.get_communication_stats()["rounds"])
    total = None if opened is None else int(opened[n_index].sum())
    return seconds, rounds, total


def expected_n(parties: int, groups: int, bins: int) -> int:
    total = sum(histogram(r, groups, bins) for r in range(parties)).sum((1, 2))
    return int(total[total >= 10].sum())


def run(job: str, parties: int, groups: int, bins: int) -> tuple[float, int]:
    from mpc.testing import run_local_parties

    results = run_local_parties(program, parties, args=(job, groups, bins),
                                timeout_s=TIMEOUT_S)
    released = results[0][2]
    assert released == expected_n(parties, groups, bins), (job, released)
    return max(r[0] for r in results), results[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", default="5")
    parser.add_argument("--sizes", default="45x20,1000x50", help="groups x bins, comma "
                                                                 "separated")
    args = parser.parse_args()
    print(f"{'parties':>7} {'groups':>6} {'bins':>4} {'job':>11} {'seconds':>8} "
          f"{'rounds':>7} {'x aggregate':>11}")
    for parties in (int(p) for p in args.parties.split(",")):
        for size in args.sizes.split(","):
            groups, bins = (int(x) for x in size.split("x"))
            base, base_rounds = run("aggregate", parties, groups, bins)
            print(f"{parties:>7} {groups:>6} {bins:>4} {'aggregate':>11} {base:>8.2f} "
                  f"{base_rounds:>7} {1.0:>11.1f}", flush=True)
            for job in ("uncensored", "censored"):
                seconds, rounds = run(job, parties, groups, bins)
                print(f"{parties:>7} {groups:>6} {bins:>4} {job:>11} {seconds:>8.2f} "
                      f"{rounds:>7} {seconds / base:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
