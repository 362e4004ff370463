"""Regenerate mpc/proto/*_pb2*.py from protos/ (run after editing a .proto).

    python scripts/gen_protos.py          # write the stubs
    python scripts/gen_protos.py --check  # exit 1 if the committed stubs are stale
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def generate(out_dir: Path) -> list[Path]:
    from grpc_tools import protoc  # dev dependency: grpcio-tools

    sources = sorted(PROTOS.glob("mpc/proto/*.proto"))
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(s) for s in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted((out_dir / "mpc" / "proto").glob("*_pb2*.py*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated = generate(Path(tmp))
        target = ROOT / "mpc" / "proto"
        stale = [g.name for g in generated if not (target / g.name).exists()
                 or not filecmp.cmp(g, target / g.name, shallow=False)]
        if args.check:
            if stale:
                print("stale generated stubs: " + ", ".join(stale), file=sys.stderr)
                return 1
            return 0
        for g in generated:
            (target / g.name).write_bytes(g.read_bytes())
        print(f"wrote {len(generated)} files to {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
