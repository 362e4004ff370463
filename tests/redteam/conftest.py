"""A curious coordinator against real workers: the same attack in two worlds.

Each attack runs against one federation of four hospitals whose workers read CSV files.
Every attack has a dataset of its own (so one attack's releases never meet another's in
the release ledger), and a world is a set of rows written into those files before the job
runs: world A, and world B that differs from it in one person's rows or a party's size.
What the coordinator sees of a job, `View`, is compared between the two worlds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mpc.config.spec import parse_spec
from mpc.demo import PartySetup
from mpc.errors import JobFailed
from mpc.synth import generate_treatments
from tests.conftest import Harness, start_federation

HOSPITALS = ["hospital_a", "hospital_b", "hospital_c", "hospital_d"]
DATASETS = [f"d{i}" for i in range(8)]
USECASES = [f"attack-{i}" for i in range(40)]
BOUNDS: dict[str, Any] = {
    "person_key": "pseudonym", "max_rows_per_person": 5, "max_persons": 400,
    "filter_columns": ["indication"], "window_columns": ["start_date"], "min_window_days": 90,
    "clip": {"cycles": [0, 50]}, "max_epsilon": 1.0, "epsilon_budget": 50.0,
    "delta_budget": 1e-3,
}
TARGET = "target-person"  # the one person whose rows differ between the worlds


@dataclass(frozen=True)
class View:
    """Everything the coordinator learns from one job."""

    status: str  # "released" or "failed"
    message: str = ""  # the failure, with the party that happened to report it first as <party>
    keep: tuple[bool, ...] = ()
    values: tuple[int, ...] = ()
    # Released: each party's phases in order. Failed: how far the job got, as one class
    # (which party's failure arrives first, and how far the others got before the abort
    # reached them, is a race between processes, not a data question).
    phases: tuple[Any, ...] = ()


BEFORE_DATA = "refused before any data was read"
READ_DATA = "data read, nothing shared"
SHARED = "shares exchanged"
_SHARING = {"sharing", "computing", "disclosure", "released", "done"}
_READING = {"local_table", "ready", "connected"}


class Worlds:
    def __init__(self, harness: Harness, root: Path, base: Mapping[str, pd.DataFrame]) -> None:
        self.harness = harness
        self.root = root
        self.base = dict(base)

    def frames(self) -> dict[str, pd.DataFrame]:
        """World A: a fresh copy of every hospital's rows."""
        return {p: df.copy() for p, df in self.base.items()}

    def write(self, dataset: str, frames: Mapping[str, pd.DataFrame]) -> None:
        for party, df in frames.items():
            df.to_csv(self.root / party / f"{dataset}.csv", index=False)

    def view(self, dataset: str, frames: Mapping[str, pd.DataFrame], spec: bytes,
             coordinator: Any = None) -> View:
        """Put `frames` in place as `dataset`, run `spec` and record what the coordinator
        sees. `coordinator`: run the job with this Coordinator instead of an honest one."""
        self.write(dataset, frames)
        self.harness.phases = []
        parsed = parse_spec(spec)
        try:
            outcome = (self.harness.run(spec) if coordinator is None
                       else coordinator.run(parsed))
        except JobFailed as failed:
            self.harness.assert_aborted_everywhere(failed.job_id or "",
                                                   parties=list(parsed.parties))
            message = failed.cause
            for party in parsed.parties:
                message = message.replace(party, "<party>")
            reached = {phase for _, phases in self._phases() for phase in phases}
            # How far the failing party got is what its failure tells; how far the others got
            # before the abort reached them is a race between processes (warm job processes
            # read their tables sooner), not a data question. Sharing needs every party.
            own = {phase for party, phases in self._phases() if party == failed.party
                   for phase in phases}
            stage = SHARED if reached & _SHARING else READ_DATA if own & _READING \
                else BEFORE_DATA
            return View("failed", message, phases=(stage,))
        table = outcome.table
        assert table is not None
        return View("released", keep=tuple(bool(k) for k in table.keep),
                    values=tuple(int(v) for v in table.value), phases=self._phases())

    def _phases(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        per_party: dict[str, list[str]] = {}
        for party, phase in self.harness.phases:
            per_party.setdefault(party, []).append(phase)
        return tuple(sorted((p, tuple(ph)) for p, ph in per_party.items()))


def with_target(frames: dict[str, pd.DataFrame], party: str = "hospital_a",
                **row: Any) -> dict[str, pd.DataFrame]:
    """World B: world A plus rows of the target person at `party`."""
    rows = [{"pseudonym": TARGET, "product": "olaparib", "indication": "ovarian",
             "line": "3+", "cycles": 4, "start_date": "2024-02-01", **row}]
    frames[party] = pd.concat([frames[party], pd.DataFrame(rows)], ignore_index=True)
    return frames


def spec_text(name: str, dataset: str, *, parties: list[str] = HOSPITALS[:3],
              kind: str = "aggregate", group_by: tuple[str, ...] = ("product", "line"),
              measure: str = "count", categories: Mapping[str, list[str]] | None = None,
              input_extra: str = "", table_extra: str = "", min_cell: int = 10,
              disclosure_extra: str = "") -> bytes:
    categories = categories or {"product": ["osimertinib", "durvalumab", "olaparib"],
                                "line": ["1", "2", "3+"], "indication": [
                                    "NSCLC", "SCLC", "breast", "ovarian", "prostate"]}
    quoted = lambda values: "[" + ", ".join(f'"{v}"' for v in values) + "]"  # noqa: E731
    lines = [f'name = "{name}"', f'kind = "{kind}"', f"parties = {quoted(parties)}",
             "[input]", f'dataset = "{dataset}"', input_extra]
    if kind == "aggregate":
        lines += ["[aggregate]", f"group_by = {quoted(group_by)}", f'measure = "{measure}"',
                  "[categories]", *(f"{c} = {quoted(categories[c])}" for c in group_by)]
    else:
        lines += [f"[{kind}]", table_extra]
    lines += ["[disclosure]", f"min_cell = {min_cell}", disclosure_extra]
    return ("\n".join(line for line in lines if line) + "\n").encode()


@pytest.fixture(scope="package")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worlds]:
    root = tmp_path_factory.mktemp("redteam")
    files = generate_treatments(root / "base", HOSPITALS, patients_per_party=150, seed=31)
    base = {p: pd.read_csv(f, dtype=str).assign(cycles=lambda d: d.cycles.astype(int),
                                                start_date="2024-01-15")
            for p, f in files.items()}
    data = root / "data"
    for party in HOSPITALS:
        (data / party).mkdir(parents=True)
    setups = {p: PartySetup({d: {"path": str(data / p / f"{d}.csv")} for d in DATASETS},
                            USECASES, min_cell_floor=10 if p != "hospital_a" else 1,
                            min_contributors_floor=2 if p == "hospital_d" else 1,
                            bounds={d: BOUNDS for d in DATASETS})
              for p in HOSPITALS}
    for party, df in base.items():  # every dataset exists when the workers start
        for dataset in DATASETS:
            df.to_csv(data / party / f"{dataset}.csv", index=False)
    w = Worlds(Harness(start_federation(root / "fed", {}, [], setups=setups), {}), data, base)
    try:
        yield w
    finally:
        w.harness.fed.stop()
