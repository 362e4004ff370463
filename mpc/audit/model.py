"""What the audit verifier reads and reports: member logs, findings, the report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    check: str  # what kind of rule failed: chain, signature, key, truncated, delivery, ...
    message: str
    member: str | None = None
    job: str | None = None


@dataclass
class MemberLog:
    path: Path
    member: str
    role: str
    entries: list[dict[str, Any]]  # valid JSON entries, in seq order
    torn: bool = False
    _by_job: dict[str, list[dict[str, Any]]] | None = field(default=None, repr=False)

    def last_seq(self) -> int:
        return self.entries[-1]["seq"] if self.entries else -1

    def by_seq(self) -> dict[int, dict[str, Any]]:
        return {e["seq"]: e for e in self.entries}

    def job_entries(self, job: str) -> list[dict[str, Any]]:
        """This job's entries, in order. Indexed once: the audit asks for every job's, and a
        scan per job would grow with jobs times entries."""
        if self._by_job is None:
            self._by_job = {}
            for e in self.entries:
                if isinstance(e.get("job"), str):
                    self._by_job.setdefault(e["job"], []).append(e)
        return self._by_job.get(job, [])

    def jobs(self) -> list[str]:
        """The jobs this log has entries of, in order of their first entry."""
        self.job_entries("")
        assert self._by_job is not None
        return list(self._by_job)


class Verdict(StrEnum):
    """The audit's outcome; `mpc audit verify` exits with its code."""

    PASS = "pass"  # every check holds
    # Every check holds, but jobs that were aborted left logs incomplete (a member that was
    # down, killed or unreachable): what an operator should look into, not tampering.
    INCIDENTS = "incidents"
    FAIL = "fail"  # a check failed: the logs were altered, or the process was not followed

    @property
    def exit_code(self) -> int:
        return {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.INCIDENTS: 3}[self]


@dataclass
class Report:
    federation: str
    logs: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    incidents: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding: the logs are intact and the process was followed (incidents aside)."""
        return not self.findings

    @property
    def verdict(self) -> Verdict:
        if self.findings:
            return Verdict.FAIL
        return Verdict.INCIDENTS if self.incidents else Verdict.PASS

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "verdict": str(self.verdict), "federation": self.federation,
                "logs": self.logs, "jobs": self.jobs,
                "findings": [asdict(f) for f in self.findings],
                "incidents": [asdict(f) for f in self.incidents]}

    def as_text(self) -> str:
        lines = [f"Audit of {len(self.logs)} logs against {self.federation}", "", "Logs"]
        for log in self.logs:
            lines.append(f"  {log['member']:<16} {log['role']:<12} {log['entries']:>6} entries"
                         f"  {log['file']}")
        lines += ["", "Jobs"]
        for job in self.jobs:
            lines.append(f"  {job['job'][:12]}  {job.get('usecase') or '?':<24} "
                         f"{job['status']:<10} parties: {', '.join(job['parties'])}; "
                         f"{job['messages']} messages paired, "
                         f"{job['dealer_requests']} dealer requests")
        if not self.jobs:
            lines.append("  none")
        lines += ["", "Findings"]
        lines += [_line(f) for f in self.findings]
        if not self.findings:
            lines.append("  none")
        if self.incidents:
            lines += ["", "Incidents (aborted jobs that left logs incomplete; not tampering)"]
            lines += [_line(f) for f in self.incidents]
        verdict = {
            Verdict.PASS: "PASS: every check holds",
            Verdict.INCIDENTS: f"PASS WITH INCIDENTS: every check holds; {len(self.incidents)}"
                               " incident(s) of aborted jobs to look into",
            Verdict.FAIL: f"FAIL: {len(self.findings)} problem(s)",
        }[self.verdict]
        lines += ["", f"Verdict: {verdict}"]
        return "\n".join(lines)


def _line(f: Finding) -> str:
    where = " ".join(x for x in (f.member and f"[{f.member}]",
                                 f.job and f"[job {f.job[:12]}]") if x)
    return f"  {f.check:<12} {where} {f.message}".rstrip()
