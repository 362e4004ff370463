"""A party's release ledger: what it released, so later jobs cannot difference it.

Small-cell suppression protects one table, not a series of them: two tables whose party
sets, groups, categories or scopes differ give suppressed cells (or one party's counts)
by subtraction. The ledger therefore holds, per dataset (whatever the use case is called
and whatever its kind), one rule for releases protected by suppression alone:

    a new release is allowed only when it is the same query as an earlier one (same
    kind, scope, groups, categories, measure, rules and party set), or when its scope
    is disjoint from that of every earlier release on the dataset (windows on the same
    column that do not overlap, or filters with no value in common).

Everything else on the same dataset is refused with a message that points to
differential privacy. Noisy releases are accounted by the privacy budget instead
(epsilon and delta per dataset, spent when the release leaves the party). Entries live
in the party's signed audit log (`release_recorded`), so the ledger survives restarts
and auditors see it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mpc.audit.events import AuditEvent
from mpc.config.bounds import DatasetBounds
from mpc.config.spec import UseCaseSpec, Window
from mpc.errors import PolicyRefused

EVENT = AuditEvent.RELEASE_RECORDED
_DP_HINT = ("a table protected by suppression alone may only be repeated exactly or asked "
            "on rows no earlier release counted; ask for it with differential privacy "
            "([disclosure.noise]) instead")


def query_of(spec: UseCaseSpec, party: str) -> dict[str, Any]:
    """What a release asks of this party's dataset, besides its scope and party set."""
    query: dict[str, Any] = {
        "kind": spec.kind, "groups": list(spec.group_by),
        "categories": [[c, list(v)] for c, v in spec.categories],
        "measure": str(spec.measure), "rules": asdict(spec.disclosure),
        "round_to": spec.round_to, **spec.job.query(),
    }
    return query


@dataclass(frozen=True)
class Release:
    job: str
    usecase: str
    dataset: str
    parties: tuple[str, ...]  # sorted
    window: Window | None
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    query: str = ""  # canonical JSON of query_of(); "" for entries of older versions
    epsilon: float = 0.0
    delta: float = 0.0
    spec_sha256: str = ""
    definition_sha256: str = ""  # of the dataset's definition (file or query) at the time

    @classmethod
    def of(cls, job: str, spec: UseCaseSpec, party: str, definition: str = "") -> Release:
        noise = spec.noise
        window, filters = spec.scope_of(party)
        return cls(job=job, usecase=spec.name, dataset=spec.dataset_of(party),
                   parties=tuple(sorted(spec.parties)), window=window, filters=filters,
                   query=json.dumps(query_of(spec, party), sort_keys=True,
                                    separators=(",", ":")),
                   epsilon=noise.epsilon if noise else 0.0, delta=noise.delta if noise else 0.0,
                   spec_sha256=spec.sha256,
                   definition_sha256=hashlib.sha256(definition.encode()).hexdigest())

    @property
    def noisy(self) -> bool:
        return self.epsilon > 0

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), "window": asdict(self.window) if self.window else None,
                # pairs, not objects: the log's canonical JSON sorts object keys
                "filters": [[c, list(v)] for c, v in self.filters]}

    @classmethod
    def from_entry(cls, e: dict[str, Any]) -> Release:
        return cls(job=str(e["job"]), usecase=str(e["usecase"]), dataset=str(e["dataset"]),
                   parties=tuple(str(p) for p in e["parties"]),
                   window=Window(**e["window"]) if e["window"] else None,
                   filters=tuple((str(c), tuple(str(x) for x in v)) for c, v in e["filters"]),
                   query=str(e.get("query", "")), epsilon=float(e["epsilon"]),
                   delta=float(e["delta"]), spec_sha256=str(e.get("spec_sha256", "")),
                   definition_sha256=str(e.get("definition_sha256", "")))

    def scope_overlaps(self, other: Release) -> bool:
        """Whether the two releases may have counted rows in common."""
        if self.window is not None and other.window is not None and \
                not self.window.overlaps(other.window):
            return False
        mine, theirs = dict(self.filters), dict(other.filters)
        return all(set(mine[c]) & set(theirs[c]) for c in mine.keys() & theirs.keys())

    def difference(self, other: Release) -> str | None:
        """What makes `other` a different question than this one, if anything."""
        if self.parties != other.parties:
            return "another party set"
        if self.window != other.window or dict(self.filters) != dict(other.filters):
            return "an overlapping but different scope (window or filter)"
        if not self.query or self.query != other.query:
            mine, theirs = json.loads(self.query or "{}"), json.loads(other.query or "{}")
            changed = sorted(k for k in mine.keys() | theirs.keys()
                             if mine.get(k) != theirs.get(k))
            return f"other {', '.join(changed) or 'query terms'}"
        return None


class Ledger:
    def __init__(self, releases: list[Release] | None = None) -> None:
        self.releases = list(releases or [])
        self._pending: dict[str, Release] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_log(cls, path: Path) -> Ledger:
        """Rebuild the ledger from the party's audit log: its entries parsed (complete lines
        only), so that text inside another entry's field never passes for a release. A
        malformed entry is skipped with a warning rather than keeping the worker down."""
        import logging

        from mpc.audit.log import iter_entries

        releases = []
        for entry in iter_entries(path):
            if entry.get("event") != EVENT:
                continue
            try:
                releases.append(Release.from_entry(entry))
            except (KeyError, TypeError, ValueError) as exc:
                logging.getLogger(__name__).warning(
                    "%s: %s entry %s is malformed (%s); skipped", path, EVENT,
                    entry.get("seq"), type(exc).__name__)
        return cls(releases)

    def spent(self, dataset: str) -> tuple[float, float]:
        """(epsilon, delta) spent on `dataset`, running jobs included."""
        entries = [r for r in (*self.releases, *self._pending.values()) if r.dataset == dataset]
        return sum(r.epsilon for r in entries), sum(r.delta for r in entries)

    def reserve(self, party: str, job: str, spec: UseCaseSpec, bounds: DatasetBounds,
                definition: str = "") -> Release:
        """Check the job against every earlier (and running) release on the same dataset;
        hold its budget until it releases or ends."""
        new = Release.of(job, spec, party, definition)
        refuse = lambda reason: PolicyRefused(party, reason)  # noqa: E731
        with self._lock:
            earlier = (*self.releases, *self._pending.values()) \
                if bounds.ledger and not new.noisy else ()
            for old in earlier:
                if old.dataset != new.dataset or old.noisy:
                    continue
                differs = old.difference(new)
                if differs is not None and old.scope_overlaps(new):
                    raise refuse(
                        f"differencing: job {old.job[:12]} ({old.usecase}) released dataset "
                        f"{new.dataset!r} on rows this job counts too, and this job asks "
                        f"{differs}; {_DP_HINT}")
            if new.noisy:
                epsilon, delta = self.spent(new.dataset)
                where = f"[datasets.{new.dataset}.bounds]"
                if new.epsilon > bounds.epsilon_budget - epsilon + 1e-12:
                    raise refuse(f"the privacy budget of dataset {new.dataset!r} is "
                                 f"exhausted: this job needs epsilon {new.epsilon:g}, "
                                 f"{max(bounds.epsilon_budget - epsilon, 0):g} of "
                                 f"{bounds.epsilon_budget:g} is left ({where} epsilon_budget)")
                if new.delta > bounds.delta_budget - delta + 1e-18:
                    raise refuse(f"the delta budget of dataset {new.dataset!r} is "
                                 f"exhausted: this job needs delta {new.delta:g}, "
                                 f"{max(bounds.delta_budget - delta, 0):g} of "
                                 f"{bounds.delta_budget:g} is left ({where} delta_budget)")
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
