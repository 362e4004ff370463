"""A party's release ledger: what it released, so later jobs cannot difference it.

Small-cell suppression protects one table. Two releases of one use case family
whose party sets differ by a single party give that party's counts by
subtraction, and so do nested or overlapping time windows or filters. The
ledger refuses such a job, and spends a privacy budget per dataset on
differentially private releases. Its entries live in the party's signed audit
log (`release_recorded`), so it survives restarts and auditors see it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mpc.config.spec import UseCaseSpec, Window
from mpc.errors import PolicyRefused

EVENT = "release_recorded"


@dataclass(frozen=True)
class Release:
    job: str
    usecase: str
    family: str
    dataset: str
    parties: tuple[str, ...]  # sorted
    window: Window | None
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    schedule: str | None
    epsilon: float = 0.0
    delta: float = 0.0
    spec_sha256: str = ""
    definition_sha256: str = ""  # of the dataset's definition (file or query) at the time
    categories: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def of(cls, job: str, spec: UseCaseSpec, party: str, definition: str = "") -> Release:
        noise = spec.noise
        return cls(job=job, usecase=spec.name, family=spec.family, dataset=spec.dataset_of(party),
                   parties=tuple(sorted(spec.parties)), window=spec.window,
                   filters=spec.filters, schedule=spec.schedule,
                   epsilon=noise.epsilon if noise else 0.0, delta=noise.delta if noise else 0.0,
                   spec_sha256=spec.sha256,
                   definition_sha256=hashlib.sha256(definition.encode()).hexdigest(),
                   categories=spec.categories)

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), "window": asdict(self.window) if self.window else None,
                # pairs, not objects: the log's canonical JSON sorts object keys
                "filters": [[c, list(v)] for c, v in self.filters],
                "categories": [[c, list(v)] for c, v in self.categories]}

    @classmethod
    def from_entry(cls, e: dict[str, Any]) -> Release:
        return cls(job=e["job"], usecase=e["usecase"], family=e["family"],
                   dataset=e["dataset"], parties=tuple(e["parties"]),
                   window=Window(**e["window"]) if e["window"] else None,
                   filters=tuple((c, tuple(v)) for c, v in e["filters"]),
                   schedule=e["schedule"], epsilon=e["epsilon"], delta=e["delta"],
                   spec_sha256=e.get("spec_sha256", ""),
                   definition_sha256=e.get("definition_sha256", ""),
                   categories=tuple((c, tuple(v)) for c, v in e.get("categories", [])))

    def scope_overlaps(self, other: Release) -> bool:
        """Whether the two releases counted some rows in common (could be differenced)."""
        if self.window is not None and other.window is not None and \
                not self.window.overlaps(other.window):
            return False
        mine, theirs = dict(self.filters), dict(other.filters)
        return all(set(mine[c]) & set(theirs[c]) for c in mine.keys() & theirs.keys())

    def same_scope(self, other: Release) -> bool:
        return self.window == other.window and dict(self.filters) == dict(other.filters)


class Ledger:
    def __init__(self, releases: list[Release] | None = None) -> None:
        self.releases = list(releases or [])
        self._pending: dict[str, Release] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_log(cls, path: Path) -> Ledger:
        """Rebuild the ledger from the party's audit log (complete lines only)."""
        releases = []
        if path.exists():
            with path.open("rb") as fh:
                for line in fh:
                    if f'"{EVENT}"'.encode() in line and line.endswith(b"\n"):
                        releases.append(Release.from_entry(json.loads(line)))
        return cls(releases)

    def spent(self, dataset: str) -> float:
        return sum(r.epsilon for r in (*self.releases, *self._pending.values())
                   if r.dataset == dataset)

    def reserve(self, party: str, job: str, spec: UseCaseSpec, budget: float | None,
                definition: str = "") -> Release:
        """Check the job against every earlier (and running) release; hold its budget."""
        new = Release.of(job, spec, party, definition)
        refuse = lambda reason: PolicyRefused(party, reason)  # noqa: E731
        with self._lock:
            for old in (*self.releases, *self._pending.values()):
                if old.family != new.family or old.dataset != new.dataset or \
                        not old.scope_overlaps(new):
                    continue
                differ = sorted(set(old.parties) ^ set(new.parties))
                if len(differ) == 1:
                    raise refuse(
                        f"differencing: job {old.job[:12]} released family {new.family!r} for "
                        f"{', '.join(old.parties)}; this job's parties differ only by "
                        f"{differ[0]}, whose figures the difference would expose")
                if old.parties == new.parties and not old.same_scope(new):
                    what = "window" if old.window != new.window else "filter"
                    raise refuse(
                        f"differencing: this job's {what} overlaps that of job {old.job[:12]} "
                        f"(family {new.family!r}) without being the same; only scheduled "
                        "repeats over non-overlapping periods may follow each other")
            if new.epsilon:
                if budget is None:
                    raise refuse(f"no privacy budget is configured for dataset "
                                 f"{new.dataset!r} ([policy.budget])")
                left = budget - self.spent(new.dataset)
                if new.epsilon > left + 1e-12:
                    raise refuse(f"the privacy budget of dataset {new.dataset!r} is "
                                 f"exhausted: this job needs epsilon {new.epsilon:g}, "
                                 f"{max(left, 0):g} of {budget:g} is left")
            self._pending[job] = new
            return new

    def commit(self, job: str) -> Release | None:
        """The job released: its entry becomes permanent (the caller logs it)."""
        with self._lock:
            release = self._pending.pop(job, None)
            if release is not None:
                self.releases.append(release)
            return release

    def cancel(self, job: str) -> None:
        """The job ended before anything left the party: nothing was spent."""
        with self._lock:
            self._pending.pop(job, None)
