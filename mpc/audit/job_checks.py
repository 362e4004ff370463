"""Per-job checks of the audit: spec, policy, delivery, dealer ledger, releases, rules,
and the pins of the coordinator's and the dealer's logs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from mpc.audit.events import COORDINATOR_ROLE, DEALER_ROLE, MESSAGE_RECORD, AuditEvent
from mpc.audit.log import RESERVED, canonical
from mpc.audit.model import Finding, MemberLog, Report
from mpc.config.federation import Federation
from mpc.config.spec import COORDINATOR, DisclosureRules
from mpc.report.table import result_digest


def _closes(role: str, entry: dict[str, Any]) -> bool:
    """Whether `entry` ends a job in a log of this role: its last step, an abort, a refusal."""
    event = entry.get("event")
    if role == "party":
        return event in (AuditEvent.PEER_HEADS, AuditEvent.JOB_ABORTED) or (
            event == AuditEvent.POLICY_DECISION and not entry.get("approved"))
    if role == "coordinator":
        return event in (AuditEvent.JOB_END, AuditEvent.JOB_ABORTED)
    return True  # the dealer has no closing entry per job


class JobView:
    """Everything the logs say about one job, grouped by member and event."""

    def __init__(self, job: str, logs: dict[str, MemberLog]) -> None:
        self.job = job
        self.entries: dict[str, list[dict[str, Any]]] = {
            m: log.job_entries(job) for m, log in logs.items() if log.job_entries(job)}
        # Indexed once per job: the checks ask for many events, and a scan each would cost
        # the job's whole size every time.
        self._by_event: dict[tuple[str, Any], list[dict[str, Any]]] = {}
        self._members: dict[Any, list[str]] = {}
        for member, entries in self.entries.items():
            for e in entries:
                event = e.get("event")
                if not isinstance(event, str):
                    continue
                found = self._by_event.setdefault((member, event), [])
                if not found:
                    self._members.setdefault(event, []).append(member)
                found.append(e)

    def events(self, member: str, event: AuditEvent) -> list[dict[str, Any]]:
        return self._by_event.get((member, event), [])

    def first(self, member: str, event: AuditEvent) -> dict[str, Any] | None:
        found = self.events(member, event)
        return found[0] if found else None

    def all(self, event: AuditEvent) -> list[tuple[str, dict[str, Any]]]:
        return [(m, e) for m in self._members.get(event, []) for e in self.events(m, event)]


def check_jobs(logs: dict[str, MemberLog], federation: Federation, report: Report) -> None:
    started: dict[str, float] = {}  # job -> the time of its first entry in any log
    for log in logs.values():
        for job in log.jobs():
            at = min(_time(e) for e in log.job_entries(job))
            started[job] = min(at, started.get(job, at))
    for job in sorted(started, key=lambda j: started[j]):
        _check_job(JobView(job, logs), logs, federation, report)


def _time(entry: dict[str, Any]) -> float:
    at = entry.get("time")
    return float(at) if isinstance(at, int | float) else float("inf")


def _check_job(view: JobView, logs: dict[str, MemberLog], federation: Federation,
               report: Report) -> None:
    job = view.job

    def finding(check: str, message: str, member: str | None = None) -> None:
        report.findings.append(Finding(check, message, member, job))

    def incident(check: str, message: str, member: str | None = None) -> None:
        report.incidents.append(Finding(check, message, member, job))

    submitted_by = view.all(AuditEvent.JOB_SUBMITTED)
    submitted = [e for _, e in submitted_by]
    decisions = view.all(AuditEvent.POLICY_DECISION)
    parties: list[str] = list(submitted[0]["parties"]) if submitted else []
    for _, d in decisions:
        parties = parties or list(d.get("parties", []))
    parties = parties or sorted(m for m, log in logs.items() if log.role == "party"
                                and view.entries.get(m))
    recipients = (submitted[0]["recipients"] if submitted else
                  next((d["recipients"] for _, d in decisions if "recipients" in d), []))
    ran = bool(view.all(AuditEvent.SESSION_START) or view.all(AuditEvent.RESULT))
    aborted = bool(view.all(AuditEvent.JOB_ABORTED))
    status = ("aborted" if aborted else "completed" if view.all(AuditEvent.JOB_END)
              else "refused" if any(not d["approved"] for _, d in decisions)
              else "incomplete")

    # Every member of the job left a log, and each log closes the job. In a job that was
    # aborted, a member that was down, killed or unreachable leaves no entry or no closing
    # entry: an incident, reported apart, as long as others logged the abort.
    coordinators = ({e["coordinator"] for _, e in view.all(AuditEvent.JOB_RECEIVED)}
                    | {m for m, _ in submitted_by})
    expected = set(parties) | coordinators
    if ran:
        expected.add(federation.dealer.name)
    abort = _abort_words(view, coordinators)
    stopped: set[str] = set()  # logs that stop in the middle of this job
    for member in sorted(expected):
        if member not in logs:
            finding("missing", f"no log from {member}, a member of this job")
            continue
        role = logs[member].role
        mine = view.entries.get(member, [])
        if not mine and role == "party":
            if abort:
                incident("missing", f"{member}'s log has no entry of this job, which was "
                                    f"aborted ({abort}): it never took part", member)
            else:
                finding("missing", f"{member}'s log has no entry of this job", member)
        if mine and not any(_closes(role, e) for e in mine):
            stopped.add(member)
            if abort:
                incident("truncated", f"{member}'s log stops in the middle of this job, which "
                                      f"was aborted ({abort}): its process ended before it "
                                      "closed the job", member)
            else:
                finding("truncated", f"{member}'s log stops in the middle of this job: its "
                                     "closing entry is missing", member)

    # All ran the same spec, and every policy approved it.
    hashes = {(m, e["spec_sha256"]) for m, e in (*view.all(AuditEvent.JOB_SUBMITTED),
                                                  *view.all(AuditEvent.POLICY_DECISION),
                                                  *view.all(AuditEvent.SESSION_START),
                                                  *view.all(AuditEvent.JOB_RECEIVED))
              if "spec_sha256" in e}
    if len({h for _, h in hashes}) > 1:
        detail = "; ".join(f"{m}: {h[:12]}" for m, h in sorted(hashes))
        finding("spec", f"the members hold different specs for this job ({detail})")
    for member, d in decisions:
        if not d["approved"] and ran:
            finding("policy", f"the job ran although {member}'s policy refused it "
                              f"({d.get('reason', 'no reason recorded')})", member)
    for member, _ in view.all(AuditEvent.SESSION_START):
        if not any(d["approved"] for d in view.events(member, AuditEvent.POLICY_DECISION)):
            finding("policy", f"{member} started the job without an approving policy decision",
                    member)

    messages = _check_messages(view, logs, aborted, finding,
                               incident if abort else finding, stopped)
    requests = _check_dealer(view, federation, finding)
    _check_releases(view, recipients, finding)
    _check_certificates(view, federation, finding)
    _check_rules(view, finding)
    if view.all(AuditEvent.RELEASE):
        _check_pins(view, set(parties), coordinators, federation.dealer.name, finding)
    report.jobs.append({"job": job, "usecase": (submitted[0]["usecase"] if submitted else
                                                next((d.get("usecase") for _, d in decisions
                                                      if d.get("usecase")), None)),
                        "status": status, "parties": parties, "messages": messages,
                        "dealer_requests": requests})


def _check_messages(view: JobView, logs: dict[str, MemberLog], aborted: bool,
                    finding: Any, incident: Any, stopped: set[str]) -> int:
    """Every message one party sent, its peer received, with the same digest and size. A
    receipt without its sending is an incident when the sender's log of an aborted job
    stops in the middle of it: its last records went down with its process."""
    sent: dict[tuple[str, str, int], dict[str, Any]] = {}
    received: dict[tuple[str, str, int], dict[str, Any]] = {}
    for member, e in _messages(view, finding):
        if e["dir"] == "sent":
            sent[(member, e["peer"], e["number"])] = e
        else:
            received[(e["peer"], member, e["number"])] = e
    paired = 0
    for key in sorted(set(sent) | set(received)):
        sender, receiver, seq = key
        s, r = sent.get(key), received.get(key)
        if s is not None and r is not None:
            paired += 1
            if s["digest"] != r["digest"] or s["size"] != r["size"]:
                finding("digest", f"message {seq} from {sender} to {receiver} ({s['tag']}): "
                                  f"{receiver} logged another digest or size than {sender} sent")
        elif s is not None and not aborted and receiver in logs:
            finding("delivery", f"{sender} logged message {seq} to {receiver} ({s['tag']}) as "
                                f"sent, but {receiver} never logged receiving it", sender)
        elif r is not None and sender in logs:
            report = incident if sender in stopped else finding
            report("delivery", f"{receiver} logged message {seq} from {sender} ({r['tag']}) as "
                               f"received, but {sender} never logged sending it", receiver)
    return paired


def _abort_words(view: JobView, coordinators: set[str]) -> str | None:
    """Who logged the job's abort and why (the coordinator's words first), or None when
    nobody did."""
    aborts = view.all(AuditEvent.JOB_ABORTED)
    if not aborts:
        return None
    member, e = next(((m, e) for m, e in aborts if m in coordinators), aborts[0])
    return f"{member} logged: {_short(e.get('reason', 'no reason recorded'))}"


def _messages(view: JobView, finding: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every message record of the job, as (member, record): the records of MESSAGES
    entries and the one-message entries earlier versions wrote."""
    yield from view.all(AuditEvent.MESSAGE)
    for member, e in view.all(AuditEvent.MESSAGES):
        records = e.get("messages")
        if not isinstance(records, list):
            finding("chain", f"{member}'s entry {e['seq']} ({e['event']}) holds no list of "
                             "messages", member)
            continue
        for record in records:
            if not isinstance(record, dict) or not set(MESSAGE_RECORD) <= record.keys():
                finding("chain", f"{member}'s entry {e['seq']} ({e['event']}) holds a "
                                 "malformed message record", member)
                continue
            yield member, record


def _check_dealer(view: JobView, federation: Federation, finding: Any) -> int:
    """The dealer's ledger of correlations equals every party's."""
    dealer = federation.dealer.name
    served = [[e["request"], e["op"], e["shape"]]
              for e in view.events(dealer, AuditEvent.CORRELATION)]
    for member, e in view.all(AuditEvent.DEALER_LEDGER):
        if dealer in view.entries and e["requests"] != served:
            diff = next((i for i, (a, b) in enumerate(zip(e["requests"], served, strict=False))
                         if a != b), min(len(e["requests"]), len(served)))
            finding("dealer", f"{member}'s ledger of dealer requests disagrees with the "
                              f"dealer's from request {diff} on ({len(e['requests'])} against "
                              f"{len(served)} requests)", member)
    return len(served)


def _check_releases(view: JobView, recipients: list[str], finding: Any) -> None:
    """Releases only to recipients; what openers sent is what recipients received; every
    released cell within the rules the parties approved."""
    for member, e in view.all(AuditEvent.RELEASE):
        if e["recipient"] not in recipients:
            finding("recipients", f"{member} released the result to {e['recipient']}, which "
                                  "is not a recipient of this job", member)
    received = {e["party"]: e["digests"] for _, e in view.all(AuditEvent.RELEASE_RECEIVED)}
    for member, e in view.all(AuditEvent.RELEASE):
        if e["recipient"] == COORDINATOR and member in received and \
                received[member] != e.get("digests"):
            finding("result", f"what {member} released and what the coordinator received "
                              "differ (digests)", member)
    approved = [DisclosureRules(**d["rules"]) for _, d in view.all(AuditEvent.POLICY_DECISION)
                if d["approved"] and "rules" in d]
    digests = set()
    for member, e in view.all(AuditEvent.RESULT):
        if member not in recipients and not (e.get("role") == "coordinator"
                                             and COORDINATOR in recipients):
            finding("recipients", f"{member} recorded the result but is not a recipient",
                    member)
        rules = DisclosureRules(**e["rules"])
        for floor in approved:
            if not rules.at_least_as_strict_as(floor):
                finding("disclosure", f"{member} applied rules weaker than a party approved "
                                      f"({rules} against {floor})", member)
                break
        values = e["values"]
        start, step = _counted(e)
        for i, v in list(enumerate(values))[start::step]:
            if v is None:
                continue
            if (v == 0 and rules.suppress_zero) or (v != 0 and v < rules.min_cell):
                finding("disclosure", f"cell {i} was released with value {v}, which the "
                                      f"rules (min_cell {rules.min_cell}, suppress_zero "
                                      f"{rules.suppress_zero}) suppress", member)
        keep = np.array([v is not None for v in values])
        value = np.array([v or 0 for v in values], dtype=np.int64)
        if result_digest(keep, value) != e["digest"]:
            finding("result", f"{member}'s result digest does not match its released values",
                    member)
        digests.add(e["digest"])
    if len(digests) > 1:
        finding("result", "the recipients hold different results")


def _counted(result: dict[str, Any]) -> tuple[int, int]:
    """Which released values are counts under the small-cell rules: (start, step) as the
    recipient's kind laid them out (a distribution's per-group n; older entries: all)."""
    counts = result.get("counts", [0, 1])
    if not (isinstance(counts, list) and len(counts) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)
            and counts[0] >= 0 and counts[1] >= 1):
        return 0, 1  # malformed: check every value
    return counts[0], counts[1]


def _check_certificates(view: JobView, federation: Federation, finding: Any) -> None:
    members = federation.members()
    for member, e in view.all(AuditEvent.SESSION_START):
        for party, fingerprint in e.get("certificates", {}).items():
            # Every certificate the federation lists for the member: a job before a
            # rotation saw the old one.
            registered = members[party].cert_sha256s if party in members else ()
            if registered and fingerprint not in registered:
                finding("certificate", f"{member} saw a certificate for {party} that is not "
                                       "the one the federation registers", member)


def _check_rules(view: JobView, finding: Any) -> None:
    """Every party applied the same disclosure rules (as its session start records them,
    and the digest of what the parties agreed on, where it is recorded)."""
    def differ(what: str, held: dict[str, Any]) -> None:
        if len({canonical({"v": v}) for v in held.values()}) > 1:
            detail = "; ".join(f"{m}: {_short(v)}" for m, v in sorted(held.items()))
            finding("rules", f"the parties applied different {what} for this job ({detail})")

    starts = view.all(AuditEvent.SESSION_START)
    differ("rules", {m: e.get("rules") for m, e in starts})
    differ("agreed rules digests", {m: e["rules_sha256"] for m, e in starts
                                    if "rules_sha256" in e})
    differ("agreed rules", {m: {k: v for k, v in e.items() if k not in RESERVED | {"job"}}
                            for m, e in view.all(AuditEvent.RULES_AGREED)})


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(value.items()))
    text = str(value)
    return text[:12] if len(text) == 64 else text


def _check_pins(view: JobView, parties: set[str], coordinators: set[str], dealer: str,
                finding: Any) -> None:
    """Once a job released something, some party pinned the head of the coordinator's log
    (handed over after its release and end entries) and of the dealer's (handed over with
    each leave). Whether the pinned entries are still in those logs as pinned is checked
    with every other recorded head (verify._check_heads)."""
    pins = [(m, e) for m, e in view.all(AuditEvent.MEMBER_HEAD) if m in parties]
    for role, names in ((COORDINATOR_ROLE, coordinators), (DEALER_ROLE, {dealer})):
        mine = [(m, e) for m, e in pins if e.get("member_role") == role]
        pinned = set()
        for member, e in mine:
            head = e.get("head")
            name = head.get("member") if isinstance(head, dict) else None
            if name not in names:
                finding("pin", f"{member} pinned the log of {name!r} as this job's {role}, "
                               f"which is {', '.join(sorted(names)) or 'unknown'}", member)
            pinned.add(name)
        for name in sorted(names - pinned):
            finding("pin", f"no party pinned the log head of {name}, the {role} of this job, "
                           "although the job released: entries it dropped or rewrote later "
                           "would go unnoticed", name)
