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
from typing import Protocol

from mpc.config.spec import DisclosureRules
from mpc.errors import ProtocolAbort

TAG = "rules/agree"


class Mesh(Protocol):
    """What the agreement needs of the peer transport."""

    rank: int
    parties: list[str]

    @property
    def peers(self) -> list[int]: ...

    def send_object(self, peer: int, obj: object, tag: str) -> None: ...

    def recv_object(self, peer: int, tag: str) -> object: ...


def rules_digest(job_id: str, spec_sha256: str, parties: list[str],
                 rules: DisclosureRules) -> str:
    terms = {"job": job_id, "spec_sha256": spec_sha256, "parties": parties,
             "rules": asdict(rules)}
    return hashlib.sha256(json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()
                          ).hexdigest()


def agree_on_rules(mesh: Mesh, job_id: str, spec_sha256: str,
                   rules: DisclosureRules) -> str:
    """The digest every party of the job holds; ProtocolAbort naming a party that holds
    another one."""
    mine = rules_digest(job_id, spec_sha256, list(mesh.parties), rules)
    for r in mesh.peers:
        mesh.send_object(r, mine, TAG)
    for r in mesh.peers:
        theirs = mesh.recv_object(r, TAG)
        if theirs != mine:
            raise ProtocolAbort(f"party {mesh.parties[r]} was given other rules for this job "
                                "than this party: the coordinator's start orders differ")
    return mine
