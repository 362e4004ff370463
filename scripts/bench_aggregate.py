"""Benchmark the MPC phase of "sum N parties' tables, then disclosure control" three ways.

    python scripts/bench_aggregate.py [--parties 3,5] [--cells 1000,100000] [--skip-mpyc]

- ours: the project's engine (gRPC peer mesh with mutual TLS, dealer-backed tuples),
  through mpc.testing.run_local_parties;
- gloo: CrypTen's own torch.distributed (gloo) communicator and TTP provider;
- mpyc: MPyC (Shamir sharing over a prime field), one process per party
  (scripts/bench_mpyc_party.py).

Each party r holds `cells` Poisson(4) counts and a contributor indicator (count > 0).
The computation: secure sum of all parties' [values; indicators], the tests
value >= min_cell and contributors >= min_contributors (one batched comparison),
keep = both tests, released = value * keep, and [keep; released] opened to party 0.
Each party times from just before the sharing to just after the opening; the
reported time is the maximum over parties. Party 0's checksums (sum of keep, sum
of released) are checked against numpy for every implementation.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

MIN_CELL = 10
MIN_CONTRIBUTORS = 2
SEED = 20240611
TIMEOUT_S = 1800.0
HERE = Path(__file__).resolve().parent

Checksum = tuple[int, int]  # (sum of keep, sum of released)


def local_table(seed: int, rank: int, cells: int) -> np.ndarray:
    """Party `rank`'s table: row 0 the counts, row 1 whether it contributes to the cell."""
    values = np.random.default_rng(seed + rank).poisson(4, cells).astype(np.int64)
    return np.stack([values, (values > 0).astype(np.int64)])


def plaintext_checksum(world: int, cells: int, seed: int) -> Checksum:
    total = sum(local_table(seed, r, cells) for r in range(world))
    keep = (total[0] >= MIN_CELL) & (total[1] >= MIN_CONTRIBUTORS)
    return int(keep.sum()), int((total[0] * keep).sum())


def crypten_aggregate(crypten: Any, rank: int, world: int, cells: int,
                      seed: int) -> tuple[float, Checksum | None]:
    """The CrypTen computation shared by ours and gloo: same calls, same sizes.

    Returns this party's seconds and, at party 0, the checksum of the opened result.
    """
    import torch

    table = torch.from_numpy(local_table(seed, rank, cells))
    zeros = torch.zeros_like(table)
    start = time.perf_counter()
    inputs = [crypten.cryptensor(table if r == rank else zeros, src=r, precision=0)
              for r in range(world)]
    total = inputs[0]
    for other in inputs[1:]:
        total = total + other
    value, contributors = total[0], total[1]
    tests = crypten.stack([value - MIN_CELL, contributors - MIN_CONTRIBUTORS]) >= 0
    keep = tests[0] * tests[1]
    released = value * keep
    opened = crypten.stack([keep, released]).get_plain_text(dst=0)
    seconds = time.perf_counter() - start
    if rank != 0:  # the other parties' reduce buffers hold partial sums, not the result
        return seconds, None
    out = opened.round().long()
    return seconds, (int(out[0].sum()), int(out[1].sum()))


# --- ours ----------------------------------------------------------------------------------


def ours_program(ctx: Any, cells: int, seed: int) -> tuple[float, Checksum | None]:
    """Runs inside each party of run_local_parties, CrypTen already initialised."""
    import crypten

    return crypten_aggregate(crypten, ctx.rank, ctx.world_size, cells, seed)


def run_ours(world: int, cells: int, seed: int) -> tuple[float, Checksum]:
    from mpc.testing import run_local_parties

    results = run_local_parties(ours_program, world, args=(cells, seed), timeout_s=TIMEOUT_S)
    checksum = results[0][1]
    assert checksum is not None
    return max(seconds for seconds, _ in results), checksum


# --- gloo ----------------------------------------------------------------------------------


def _gloo_process(rank: int, world: int, rendezvous: str, cells: int, seed: int,
                  results: Any) -> None:
    """One CrypTen process on CrypTen's own communicator; rank == world is the TTP server."""
    try:
        os.environ.update(WORLD_SIZE=str(world), RANK=str(rank),
                          RENDEZVOUS=f"file://{rendezvous}", DISTRIBUTED_BACKEND="gloo")
        # Only the import workaround: install() would swap in the project's communicator,
        # provider and randomness, which this baseline must not use.
        from mpc.engine.crypten_compat import load_crypten

        crypten = load_crypten()
        crypten.cfg.mpc.provider = "TTP"  # must be set before init() in every process
        if rank == world:
            crypten.mpc.provider.TTPServer()  # initialises, then serves until terminated
            crypten.uninit()
            return
        crypten.init()
        outcome = crypten_aggregate(crypten, rank, world, cells, seed)
        crypten.uninit()  # rank 0 tells the TTP server to stop
        results.put(("result", rank, outcome))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", rank, f"{type(exc).__name__}: {exc}"))


def run_gloo(world: int, cells: int, seed: int) -> tuple[float, Checksum]:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="bench-gloo-") as tmp:
        rendezvous = str(Path(tmp) / "rendezvous")
        procs = [ctx.Process(target=_gloo_process, daemon=True,
                             args=(r, world, rendezvous, cells, seed, results))
                 for r in range(world + 1)]
        for p in procs:
            p.start()
        outcomes: dict[int, tuple[float, Checksum | None]] = {}
        try:
            while len(outcomes) < world:
                try:
                    kind, rank, value = results.get(timeout=TIMEOUT_S)
                except queue.Empty:
                    raise RuntimeError("gloo parties did not finish in time") from None
                if kind == "error":
                    raise RuntimeError(f"gloo rank {rank} failed: {value}")
                outcomes[rank] = value
        finally:
            for p in procs:
                p.join(timeout=30)
                if p.is_alive():
                    p.kill()
    checksum = outcomes[0][1]
    assert checksum is not None
    return max(seconds for seconds, _ in outcomes.values()), checksum


# --- mpyc ----------------------------------------------------------------------------------


def _free_base_port(world: int) -> int:
    """A base port b with b..b+world-1 free right now (MPyC listens on b + party index)."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + world > 65535:
            continue
        try:
            held = []
            for port in range(base, base + world):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port range for MPyC")


def run_mpyc(world: int, cells: int, seed: int) -> tuple[float, Checksum]:
    base = _free_base_port(world)
    script = str(HERE / "bench_mpyc_party.py")
    procs = [subprocess.Popen(
        [sys.executable, script, "-M", str(world), "-I", str(i), "-B", str(base), "--no-log",
         "--bench-cells", str(cells), "--bench-seed", str(seed),
         "--bench-min-cell", str(MIN_CELL), "--bench-min-contributors", str(MIN_CONTRIBUTORS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(world)]
    outputs: list[dict[str, Any]] = []
    try:
        for i, p in enumerate(procs):
            out, err = p.communicate(timeout=TIMEOUT_S)
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            if p.returncode != 0 or not lines:
                raise RuntimeError(f"mpyc party {i} failed (rc {p.returncode}): {err[-2000:]}")
            outputs.append(json.loads(lines[-1][len("RESULT "):]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return (max(o["seconds"] for o in outputs),
            (int(outputs[0]["keep"]), int(outputs[0]["released"])))


# --- driver --------------------------------------------------------------------------------


def _int_list(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=_int_list, default=[3, 5])
    parser.add_argument("--cells", type=_int_list, default=[1_000, 100_000])
    parser.add_argument("--skip-mpyc", action="store_true")
    args = parser.parse_args(argv)

    runners = {"ours": run_ours, "gloo": run_gloo}
    if not args.skip_mpyc:
        runners["mpyc"] = run_mpyc
    ok = True
    summaries: list[tuple[int, int, dict[str, float]]] = []
    for world in args.parties:
        for cells in args.cells:
            expected = plaintext_checksum(world, cells, SEED)
            times: dict[str, float] = {}
            for name, runner in runners.items():
                seconds, checksum = runner(world, cells, SEED)
                agrees = checksum == expected
                ok = ok and agrees
                times[name] = seconds
                print(f"N={world} cells={cells} {name}: {seconds:.3f}s "
                      f"keep={checksum[0]} released={checksum[1]} "
                      f"{'ok' if agrees else f'MISMATCH (expected {expected})'}", flush=True)
            summaries.append((world, cells, times))
            print(_summary(world, cells, times), flush=True)
    if not ok:
        print("some implementation disagreed with the plaintext result", flush=True)
        return 1
    # The headline: N=5 x 100,000 cells if it ran, otherwise the largest configuration.
    headline = next((t for w, c, t in summaries if (w, c) == (5, 100_000)), None)
    if headline is None:
        headline = max(summaries, key=lambda s: (s[0] * s[1], s[0]))[2]
    print(_ratios(headline), flush=True)
    return 0


def _ratios(times: dict[str, float]) -> str:
    text = f"ratio_vs_gloo={times['ours'] / times['gloo']:.2f}"
    if "mpyc" in times:
        text += f" speedup_vs_mpyc={times['mpyc'] / times['ours']:.2f}"
    return text


def _summary(world: int, cells: int, times: dict[str, float]) -> str:
    parts = " ".join(f"{name}={seconds:.2f}s" for name, seconds in times.items())
    return f"N={world} cells={cells} {parts} {_ratios(times)}"


if __name__ == "__main__":
    sys.exit(main())
