"""The released table: reconstructed by a recipient, written as result.csv and result.json."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mpc.config.spec import DisclosureRules, UseCaseSpec
from mpc.errors import ProtocolAbort
from mpc.kinds import kind_of

if TYPE_CHECKING:
    import torch


def reconstruct(keep_shares: Sequence[torch.Tensor], value_shares: Sequence[torch.Tensor],
                cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Add every party's shares (mod 2^64); check the result is a well-formed release."""
    import torch  # here: the auditor and the report read this module, and need no torch

    if len(keep_shares) != len(value_shares) or not keep_shares:
        raise ProtocolAbort("a release needs one keep and one value share from every party")
    for t in (*keep_shares, *value_shares):
        if t.dtype != torch.int64 or t.shape != (cells,):
            raise ProtocolAbort(f"a release share has shape {tuple(t.shape)}, expected ({cells},)")
    keep = torch.stack(list(keep_shares)).sum(0)  # int64 sums wrap: arithmetic mod 2^64
    value = torch.stack(list(value_shares)).sum(0)
    if not bool(((keep == 0) | (keep == 1)).all()):
        raise ProtocolAbort("the opened keep mask is not 0/1: the parties' shares disagree")
    if bool((value[keep == 0] != 0).any()):
        raise ProtocolAbort("a suppressed cell opened to a non-zero value")
    return keep.numpy().astype(bool), value.numpy()


@dataclass(frozen=True)
class ReleasedTable:
    spec: UseCaseSpec
    rules: DisclosureRules  # the rules actually applied (spec plus every party's floors)
    job_id: str
    keep: np.ndarray
    value: np.ndarray
    released_at: str = field(
        default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    interval: int | None = None  # with noise: released value +- interval covers 95%

    @classmethod
    def post_process(cls, spec: UseCaseSpec, rules: DisclosureRules, job_id: str,
                     keep: np.ndarray, value: np.ndarray) -> ReleasedTable:
        """What every recipient does to an opened release: round to the spec's round_to
        (never below min_cell), and state the noise's 95% interval. Post-processing of a
        differentially private value costs no privacy."""
        interval = None
        if spec.noise is not None:
            from mpc.protocols.noise import interval_half_width

            noise = spec.noise_under(rules)
            assert noise is not None
            interval = interval_half_width(noise, len(spec.parties))
        if spec.round_to > 1:
            r = spec.round_to
            floor = -(-rules.min_cell // r) * r  # the smallest multiple of r >= min_cell
            rounded = (value + r // 2) // r * r
            value = np.where(keep & (value != 0), np.maximum(rounded, floor), 0)
        return cls(spec, rules, job_id, keep, value, interval=interval)

    @property
    def cell_keep(self) -> np.ndarray:
        """The table's cells without the trailing scalar (linked or distinct persons)."""
        return self.keep[: self.spec.cells]

    @property
    def cell_value(self) -> np.ndarray:
        return self.value[: self.spec.cells]

    def scalar(self) -> dict[str, Any] | None:
        """{"value", "suppressed"} of the linked or distinct count, if the kind has one."""
        if self.spec.scalar is None:
            return None
        kept = bool(self.keep[-1])
        return {"value": int(self.value[-1]) if kept else None, "suppressed": not kept}

    def files(self) -> dict[str, tuple[list[str], list[dict[str, Any]]]]:
        """The result files' columns and rows, as the kind lays them out."""
        return kind_of(self.spec.job).result_files(self)

    def rows(self) -> list[dict[str, Any]]:
        """result.csv's rows: one per cell or group, with `suppressed`."""
        return next(iter(self.files().values()))[1]

    @property
    def suppressed_cells(self) -> int:
        return sum(1 for row in self.rows() if row["suppressed"])

    def audit_fields(self) -> dict[str, Any]:
        """What a recipient records of the release: it is the public output, so the values
        are logged, letting an auditor check every released cell against the rules."""
        return {"digest": result_digest(self.keep, self.value),
                "rules": asdict(self.rules),
                "counts": list(kind_of(self.spec.job).counted_values(self.spec)),
                "values": [int(v) if k else None for k, v in zip(self.keep, self.value,
                                                                 strict=True)]}

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "name": spec.name,
            "kind": spec.kind,
            "job_id": self.job_id,
            "spec_sha256": spec.sha256,
            "parties": list(spec.parties),
            "recipients": list(spec.recipients),
            "released_at": self.released_at,
            "measure": str(spec.measure),
            "group_by": list(spec.group_by),
            "disclosure": {"min_cell": self.rules.min_cell,
                           "suppress_zero": self.rules.suppress_zero,
                           "min_contributors": self.rules.min_contributors},
            "cells": self.spec.cells,
            "suppressed_cells": self.suppressed_cells,
            **({self.spec.scalar: self.scalar()} if self.spec.scalar else {}),
            "noise": None if spec.noise is None else {
                "mechanism": spec.noise.mechanism, "epsilon": spec.noise.epsilon,
                "delta": spec.noise.delta, "sensitivity": max(1, self.rules.sensitivity),
                "interval_95": self.interval, "round_to": spec.round_to},
            **{Path(name).stem if index else "rows": rows
               for index, (name, (_, rows)) in enumerate(self.files().items())},
        }


def result_digest(keep: np.ndarray, value: np.ndarray) -> str:
    """SHA-256 of a released table: every recipient of the same release computes the same."""
    data = np.ascontiguousarray(keep, dtype="<i8").tobytes() + \
        np.ascontiguousarray(value, dtype="<i8").tobytes()
    return hashlib.sha256(b"mpc-health/v1/result\x00" + data).hexdigest()


def _csv_value(value: Any) -> str:
    if value is None:
        return ""  # suppressed
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_result(table: ReleasedTable, out_dir: Path) -> Path:
    """OUT/<name>/result.csv (and the kind's other files) and result.json; returns the
    folder."""
    folder = out_dir / table.spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for name, (columns, rows) in table.files().items():
        with (folder / name).open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            for row in rows:
                writer.writerow([_csv_value(row[c]) for c in columns])
    (folder / "result.json").write_text(json.dumps(table.to_json(), indent=2) + "\n")
    return folder
