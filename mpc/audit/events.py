"""Names of audit events that more than one module writes or reads.

The writer and the verifier must agree on these exactly, so they are spelled once here.
"""

from __future__ import annotations

# A worker's service
JOB_RECEIVED = "job_received"  # every submission, before anything else: job, coordinator
JOB_REPLAY_REFUSED = "job_replay_refused"  # a submission under a job id seen before
POLICY_DECISION = "policy_decision"

# A party's job process
SESSION_START = "session_start"  # job, rules (and rules_sha256) the party applies
RULES_AGREED = "rules_agreed"  # a digest of the rules the parties agreed on, if recorded
RELEASE = "release"
PEER_HEADS = "peer_heads"  # the log heads of the job's other parties

# Coordinator
PARTY_HEADS = "party_heads"  # the log heads of the job's parties

# Dealer
JOB_JOINED_FIRST = "job_joined_first"  # the first join of a job id: job, parties, spec
PARTY_JOINED = "party_joined"
JOIN_REFUSED = "join_refused"  # a join under a used job id, or a second join of one rank
PARTY_LEFT = "party_left"

# A party pins another member's log head for a job: `member_role` is "coordinator" or
# "dealer", `head` is {member, seq, hash, sig}. The verifier requires both for every job
# that released something, so neither can drop or rewrite its entries of the job later.
MEMBER_HEAD = "member_head"
COORDINATOR_ROLE = "coordinator"
DEALER_ROLE = "dealer"
