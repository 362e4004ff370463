"""One rule set for everyone: the parties agree on what they apply before sharing anything.

The coordinator hands each party the start order separately, so it could hand one party
weaker rules than the others (public constants of the disclosure circuit enter at one rank
only, so that party's rules would be the ones applied). Each party first checks the order
against its own floors; then every party sends every other the digest of what it is about
to do (job id, spec hash, parties, rules) and aborts unless all digests are equal. A party's
floor therefore holds whatever the coordinator sends the others.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from mpc.config.spec import DisclosureRules
from mpc.engine.channels import PeerChannel
from mpc.errors import ProtocolAbort


def rules_digest(job_id: str, spec_sha256: str, parties: list[str],
                 rules: DisclosureRules) -> str:
    terms = {"job": job_id, "spec_sha256": spec_sha256, "parties": parties,
             "rules": asdict(rules)}
    return hashlib.sha256(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def agree_on_rules(peers: PeerChannel, spec_sha256: str, rules: DisclosureRules) -> str:
    """The digest every party of the job holds; ProtocolAbort naming a party that holds
    another one."""
    mine = rules_digest(peers.job_id, spec_sha256, peers.parties, rules)
    agree = peers.step("rules").step("agree")
    for r in peers.peers:
        agree.send_object(r, mine)
    for r in peers.peers:
        theirs = agree.recv_object(r)
        if theirs != mine:
            raise ProtocolAbort(f"party {peers.parties[r]} was given other rules for this job "
                                "than this party: the coordinator's start orders differ")
    return mine
