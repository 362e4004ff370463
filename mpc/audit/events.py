"""Every audit event, spelled once: who writes it, what it carries, what it must carry.

Writers (services, job processes, the coordinator, the dealer) and readers (the verifier,
services rebuilding their state from their own log) name events only by `AuditEvent`
members, so they agree exactly; the values are what logs have always held, so older logs
still verify. `REQUIRED_FIELDS` gives, per event, the fields its readers rely on; both
writers (`AuditLog.append`/`append_many` and `JobRecorder.add`) refuse an entry that
lacks one (`check_fields`). Writers may write more fields than are required. A name that
is not declared here is written as given: no service writes one (tests/audit/test_events.py
checks the source), but tests fabricate old or foreign entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from mpc.errors import AuditError


class AuditEvent(StrEnum):
    """An audit entry's `event`. Per member: who writes it (its log's role), and its fields
    besides the log's own (seq, time, member, role, event, prev, hash, sig)."""

    # ---- every service (mpc/cli/services.py) -----------------------------------------------
    SERVICE_START = "service_start"  # listen, cert_sha256
    SERVICE_STOP = "service_stop"  # (no fields)

    # ---- a party's worker service (mpc/worker/service.py) ----------------------------------
    # Every submission, before anything else: job, coordinator, spec_sha256.
    JOB_RECEIVED = "job_received"
    # A submission under a job id seen before: job, coordinator, code, reason, spec_sha256.
    JOB_REPLAY_REFUSED = "job_replay_refused"
    # The local policy's verdict: job, approved, spec_sha256; refused: reason; approved:
    # usecase, parties, recipients, rules (the spec's with this party's floors).
    POLICY_DECISION = "policy_decision"
    # The worker: job, peers, min_cell, min_contributors, suppress_zero (the start order).
    # The coordinator: job, rules (the rules it orders, floors applied).
    JOB_START = "job_start"
    # The worker: job, code, reason. The coordinator: job, party (None: itself), reason.
    JOB_ABORTED = "job_aborted"
    # The release ledger's entry once data left the party (mpc/worker/ledger.py Release):
    # job, usecase, dataset, parties, window, filters, query, epsilon, delta, spec_sha256,
    # definition_sha256.
    RELEASE_RECORDED = "release_recorded"
    # A pin of another member's log head: job, member_role (COORDINATOR_ROLE, written by
    # the worker service on Seal; DEALER_ROLE, written by the job process after its leave),
    # head {member, seq, hash, sig}. The verifier requires both for every job that
    # released something, so neither can drop or rewrite its entries of the job later.
    MEMBER_HEAD = "member_head"

    # ---- a party's job process (mpc/worker/job_process.py, mpc/audit/recorder.py) ----------
    # job, spec_sha256, parties, rank, coordinator, certificates, dealer, rules and
    # rules_sha256 (what the party applies, as agreed), build_sha256, policy_sha256.
    SESSION_START = "session_start"
    # A digest of the rules the parties agreed on, if recorded: job, and the digest fields.
    RULES_AGREED = "rules_agreed"
    # Peer-mesh messages, a batch per entry (JobRecorder.observe): job, messages, a list of
    # {dir (sent | received), peer, tag, number, size, digest (salted: both ends compute it
    # alike)}. One signature per batch rather than per message keeps verification fast.
    MESSAGES = "messages"
    # One message per entry, with the fields of one record of MESSAGES: what earlier
    # versions wrote; the verifier still reads it.
    MESSAGE = "message"
    # Salted commitments to the input table and its query: job, table, query.
    INPUT_COMMITMENT = "input_commitment"
    # An opening to a recipient: job, recipient; to the coordinator also coordinator and
    # digests (of the release shares, as the coordinator computes them on receipt).
    RELEASE = "release"
    # The released table, at each recipient (party or coordinator): job, digest, rules,
    # values (None for a suppressed cell).
    RESULT = "result"
    # The correlations this party consumed: job, requests [[seq, op, shape], ...].
    DEALER_LEDGER = "dealer_ledger"
    # The party: job, dealer_requests. The coordinator: job.
    JOB_END = "job_end"
    # The log heads of the job's other parties, exchanged at its end: job, heads.
    PEER_HEADS = "peer_heads"

    # ---- the coordinator (mpc/runner/coordinator.py) ---------------------------------------
    # job, usecase, spec_sha256, parties, recipients, spec (the TOML text).
    JOB_SUBMITTED = "job_submitted"
    # A party's release shares on receipt: job, party, digests.
    RELEASE_RECEIVED = "release_received"
    # The log heads of the job's parties at its end: job, heads.
    PARTY_HEADS = "party_heads"

    # ---- the dealer (mpc/dealer/service.py) ------------------------------------------------
    # The first join of a job id, before any seed leaves: job, parties, spec_sha256.
    JOB_JOINED_FIRST = "job_joined_first"
    PARTY_JOINED = "party_joined"  # job, party, rank
    # A join under a used job id, or a second join of one rank: job, party, rank, reason.
    JOIN_REFUSED = "join_refused"
    CORRELATION = "correlation"  # one served: job, request (its seq), op, shape
    PARTY_LEFT = "party_left"  # job, party, requests (the party's count), served
    POINTS_RECEIVED = "points_received"  # a party's linkage list: job, list, count
    LINK_OUTCOME = "link_outcome"  # the linkage outcome was dealt: job, lists


E = AuditEvent
# One peer-mesh message as the log records it: a record of MESSAGES (an entry of MESSAGE
# has these and job).
MESSAGE_RECORD = ("dir", "peer", "tag", "number", "size", "digest")
# What each event's readers rely on (the verifier, Ledger.from_log, the services' replay
# guards): an entry without one of these is refused when it is written.
REQUIRED_FIELDS: Mapping[AuditEvent, frozenset[str]] = MappingProxyType({
    E.SERVICE_START: frozenset(),
    E.SERVICE_STOP: frozenset(),
    E.JOB_RECEIVED: frozenset({"job", "coordinator"}),
    E.JOB_REPLAY_REFUSED: frozenset({"job", "coordinator", "code", "reason"}),
    E.POLICY_DECISION: frozenset({"job", "approved"}),
    E.JOB_START: frozenset({"job"}),
    E.JOB_ABORTED: frozenset({"job", "reason"}),
    E.RELEASE_RECORDED: frozenset({"job", "usecase", "dataset", "parties", "window",
                                   "filters", "epsilon", "delta"}),
    E.MEMBER_HEAD: frozenset({"job", "member_role", "head"}),
    E.SESSION_START: frozenset({"job", "spec_sha256", "parties", "rank", "coordinator",
                                "rules"}),
    E.RULES_AGREED: frozenset({"job"}),
    E.MESSAGES: frozenset({"job", "messages"}),
    E.MESSAGE: frozenset({"job", *MESSAGE_RECORD}),
    E.INPUT_COMMITMENT: frozenset({"job", "table", "query"}),
    E.RELEASE: frozenset({"job", "recipient"}),
    E.RESULT: frozenset({"job", "digest", "rules", "values"}),
    E.DEALER_LEDGER: frozenset({"job", "requests"}),
    E.JOB_END: frozenset({"job"}),
    E.PEER_HEADS: frozenset({"job", "heads"}),
    E.JOB_SUBMITTED: frozenset({"job", "usecase", "spec_sha256", "parties", "recipients",
                                "spec"}),
    E.RELEASE_RECEIVED: frozenset({"job", "party", "digests"}),
    E.PARTY_HEADS: frozenset({"job", "heads"}),
    E.JOB_JOINED_FIRST: frozenset({"job", "parties", "spec_sha256"}),
    E.PARTY_JOINED: frozenset({"job", "party", "rank"}),
    E.JOIN_REFUSED: frozenset({"job", "party", "rank", "reason"}),
    E.CORRELATION: frozenset({"job", "request", "op", "shape"}),
    E.PARTY_LEFT: frozenset({"job", "party", "requests", "served"}),
    E.POINTS_RECEIVED: frozenset({"job", "list", "count"}),
    E.LINK_OUTCOME: frozenset({"job", "lists"}),
})
del E


def check_fields(event: AuditEvent | str, fields: Mapping[str, Any]) -> None:
    """Refuse (AuditError) an entry of a declared event that lacks a required field. A
    plain string of a declared name counts as its member (StrEnum: equal, same hash)."""
    try:
        member = AuditEvent(event)  # the member itself, or the one a declared name names
    except ValueError:
        return  # not declared: written as given
    required = REQUIRED_FIELDS[member]
    if required <= fields.keys():
        return
    missing = sorted(required - fields.keys())
    raise AuditError(f"audit event {str(event)!r} needs the field(s) {', '.join(missing)}; "
                     f"the entry has {', '.join(sorted(fields)) or 'no fields'}")


# The member_role of a MEMBER_HEAD entry.
COORDINATOR_ROLE = "coordinator"
DEALER_ROLE = "dealer"

# Names this module declared before AuditEvent that tests still import (the same members).
JOB_RECEIVED = AuditEvent.JOB_RECEIVED
JOB_REPLAY_REFUSED = AuditEvent.JOB_REPLAY_REFUSED
JOIN_REFUSED = AuditEvent.JOIN_REFUSED
MEMBER_HEAD = AuditEvent.MEMBER_HEAD
