"""One MPyC party of the aggregation benchmark (started by scripts/bench_aggregate.py).

    python scripts/bench_mpyc_party.py -M 3 -I 0 -B 20000 --no-log \
        --bench-cells 1000 --bench-seed 7 --bench-min-cell 10 --bench-min-contributors 2

MPyC reads its own options (-M, -I, -B, ...) from sys.argv when it is imported and
ignores the rest, so this script's options carry a `--bench-` prefix that cannot be
mistaken for an abbreviation of one of MPyC's. The party prints one line,
`RESULT {json}`, with its MPC-phase seconds (and, at party 0, the checksums).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from mpyc.runtime import mpc

# Counts are small, but a real table's need not be: 32-bit secure integers (MPyC's
# default bit length) keep the comparison as wide as a deployment would need.
BIT_LENGTH = 32


def local_table(seed: int, rank: int, cells: int) -> np.ndarray:
    """The same per-party table as the CrypTen runs: values and contributor indicator."""
    values = np.random.default_rng(seed + rank).poisson(4, cells).astype(np.int64)
    return np.stack([values, (values > 0).astype(np.int64)])


async def run(cells: int, seed: int, min_cell: int, min_contributors: int) -> dict[str, float]:
    secint = mpc.SecInt(BIT_LENGTH)
    await mpc.start()
    table = local_table(seed, mpc.pid, cells)
    # Everything after this point is the MPC phase: sharing, computation, opening.
    start = time.perf_counter()
    shared = mpc.input(secint.array(table))  # one secure array per party
    total = shared[0]
    for other in shared[1:]:
        total = total + other
    thresholds = np.array([[min_cell], [min_contributors]], dtype=np.int64)
    tests = total >= thresholds  # one batched comparison over both rows
    keep = tests[0] * tests[1]
    released = total[0] * keep
    opened = await mpc.output(mpc.np_stack([keep, released]), receivers=[0])
    seconds = time.perf_counter() - start
    result: dict[str, float] = {"seconds": seconds}
    if mpc.pid == 0:
        out = np.asarray(opened, dtype=np.int64)
        result["keep"] = int(out[0].sum())
        result["released"] = int(out[1].sum())
    await mpc.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench-cells", type=int, required=True)
    parser.add_argument("--bench-seed", type=int, required=True)
    parser.add_argument("--bench-min-cell", type=int, default=10)
    parser.add_argument("--bench-min-contributors", type=int, default=2)
    args, _ = parser.parse_known_args()  # MPyC's own options are left to MPyC
    result = mpc.run(run(args.bench_cells, args.bench_seed, args.bench_min_cell,
                         args.bench_min_contributors))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
