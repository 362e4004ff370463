"""One party's floor used to decide for all: each job process checked the start order
against its own floors only, and the disclosure circuit's public constants enter at rank 0,
so a coordinator that sent rank 0 (whose own floor is weak) weaker rules than the others
got cells that the other parties' floors should have suppressed."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from mpc.config.spec import DisclosureRules
from mpc.errors import JobFailed
from mpc.proto import worker_pb2
from mpc.runner.coordinator import Coordinator
from mpc.transport.messages import rules_to_proto
from tests.redteam.conftest import READ_DATA, Worlds, spec_text, with_target


class SplitOrders(Coordinator):
    """A coordinator that hands rank 0 min_cell 1 and everyone else the agreed rules."""

    def _start(self, parties: list[Any], job_id: str, rules: DisclosureRules) -> None:
        for p in parties:
            mine = replace(rules, min_cell=1) if p.rank == 0 else rules
            order = worker_pb2.StartRequest(
                job_id=job_id, peers={q.rank: q.endpoint for q in parties},
                dealer_address=self.federation.dealer.address,
                disclosure=rules_to_proto(mine))
            try:
                p.stub.Start(order, timeout=30)
            except Exception as exc:  # noqa: BLE001 - a refused start is a failed job
                raise JobFailed(p.name, f"could not start the job ({exc})") from None


def test_weaker_rules_to_one_party_abort_everywhere(worlds: Worlds) -> None:
    # The spec asks for min_cell 1; hospital_a (rank 0) has floor 1, the others 10.
    spec = spec_text("attack-20", "d6", min_cell=1)
    honest = worlds.view("d6", worlds.frames(), spec)
    assert honest.status == "released"
    kept = [v for k, v in zip(honest.keep, honest.values, strict=True) if k and v]
    assert kept and min(kept) >= 10  # the other parties' floor held

    h = worlds.harness
    attacker = SplitOrders(h.federation, h.identity,
                           lambda party, phase, _: h.phases.append((party, phase)),
                           timeout_s=120, audit=h.audit)
    a = worlds.view("d6", worlds.frames(), spec, coordinator=attacker)
    b = worlds.view("d6", with_target(worlds.frames(), product="osimertinib", line="3+"),
                    spec, coordinator=attacker)
    assert a == b and a.status == "failed"
    assert "was given other rules for this job" in a.message
    assert a.phases == (READ_DATA,)  # nothing was shared, let alone released
