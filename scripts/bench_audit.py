"""Benchmark `mpc audit verify` on the logs of real jobs with more and more parties.

    python scripts/bench_audit.py [--parties 5,10,20] [--out out/bench-audit]
    python scripts/bench_audit.py --logs OUT/logs --federation OUT/federation.toml

For each number of parties it runs one aggregate job through `mpc demo` (real workers,
dealer and coordinator on loopback, generated data), then times the verifier on the
logs it left, against the floor any verifier pays: reading every entry, recomputing its
hash and checking its signature. The ratio of the two staying flat as the logs grow is
what "linear in the size of the logs" means here; the aim is 40 parties' logs in under
10 s. Jobs of 40 parties need about 17 GiB of memory and several minutes to run.
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mpc.audit.log import entry_hash  # noqa: E402
from mpc.audit.verify import verify  # noqa: E402
from mpc.config.federation import Federation, load_federation  # noqa: E402
from mpc.synth.treatments import generate_treatments  # noqa: E402

TARGET_SECONDS = 10.0  # for 40 parties
SPEC = """name = "bench-audit"
kind = "aggregate"
parties = [{parties}]
recipients = ["coordinator"]
[input]
dataset = "treatments"
[aggregate]
group_by = ["product", "indication", "line"]
measure = "count"
[categories]
product = ["osimertinib", "durvalumab", "olaparib"]
indication = ["NSCLC", "SCLC", "breast", "ovarian", "prostate"]
line = ["1", "2", "3+"]
[disclosure]
min_cell = 10
min_contributors = 1
suppress_zero = false
"""


def run_job(parties: int, out: Path) -> tuple[Path, Path]:
    """One job of `parties` hospitals through `mpc demo`; returns (logs, federation file)."""
    names = [f"hospital_{i:02d}" for i in range(parties)]
    generate_treatments(out / "data", names, patients_per_party=300, seed=parties)
    spec = out / "bench-audit.toml"
    spec.write_text(SPEC.format(parties=", ".join(f'"{n}"' for n in names)))
    done = subprocess.run([sys.executable, "-m", "mpc", "demo", "--data", str(out / "data"),
                           "--usecase", str(spec), "--out", str(out), "--parties-limit",
                           str(max(parties, 2)), "--start-timeout", "600", "--job-timeout",
                           "1800"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the {parties}-party job failed:\n{done.stdout}{done.stderr}")
    return out / "logs", out / "federation.toml"


def floor_pass(federation: Federation, paths: list[Path]) -> int:
    """What any verifier must do: parse, re-hash and check the signature of every entry."""
    members = federation.members()
    entries = 0
    for path in paths:
        for line in path.read_bytes().splitlines():
            e = json.loads(line)
            key = members[e["member"]].public_key()
            assert key is not None
            body = {k: v for k, v in e.items() if k not in ("hash", "sig")}
            assert entry_hash(body) == e["hash"]
            key.verify(base64.b64decode(e["sig"]), bytes.fromhex(e["hash"]))
            entries += 1
    return entries


def timed(run: object, repeat: int) -> float:
    assert callable(run)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure(label: str, logs: Path, federation_file: Path, repeat: int) -> float:
    federation = load_federation(federation_file)
    paths = sorted(logs.glob("*.jsonl"))
    report = verify(federation, paths)
    if not report.ok:
        raise SystemExit(f"{label}: the logs do not verify:\n{report.as_text()}")
    size = sum(p.stat().st_size for p in paths)
    entries = floor_pass(federation, paths)
    messages = sum(job["messages"] for job in report.jobs)
    seconds = timed(lambda: verify(federation, paths), repeat)
    floor = timed(lambda: floor_pass(federation, paths), repeat)
    print(f"{label:<12} {len(paths):>5} {entries:>8,} {messages:>9,} {size / 1e6:>7.1f} MB "
          f"{seconds:>8.2f} s {floor:>8.2f} s {seconds / floor:>6.2f}x "
          f"{seconds / (size / 1e6):>7.3f} s/MB", flush=True)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", default="5,10,20",
                        help="Comma-separated party counts, one job each.")
    parser.add_argument("--out", type=Path, default=Path("out/bench-audit"))
    parser.add_argument("--logs", type=Path, help="Verify these logs instead of running jobs.")
    parser.add_argument("--federation", type=Path, help="With --logs: their federation file.")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'job':<12} {'logs':>5} {'entries':>8} {'messages':>9} {'size':>10} "
          f"{'verify':>10} {'floor':>10} {'ratio':>7} {'per MB':>12}")
    if args.logs is not None:
        if args.federation is None:
            parser.error("--logs needs --federation")
        measure(args.logs.name, args.logs, args.federation, args.repeat)
        return 0
    slow = False
    for parties in (int(n) for n in args.parties.split(",")):
        logs, federation = run_job(parties, args.out / f"{parties}-parties")
        seconds = measure(f"{parties} parties", logs, federation, args.repeat)
        slow |= parties >= 40 and seconds >= TARGET_SECONDS
    print(f"floor: parse, re-hash and check the signature of every entry; ratio = verify / "
          f"floor. Target: 40 parties' logs in under {TARGET_SECONDS:g} s.")
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
