"""A new job kind needs its module and its registry entry, nothing else: a kind defined
here, registered for the test only, is parsed, computed, released and described by the
project's own spec parser, engine and report code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from mpc.config.fields import Fields
from mpc.config.rules import DisclosureRules
from mpc.config.scope import Filters, Window
from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.errors import ConfigError
from mpc.kinds import KINDS, JobContext, JobKind, LocalInput, Section, kind_of
from mpc.report.html import measure_words
from mpc.testing.inprocess import run_in_threads


@dataclass(frozen=True, kw_only=True)
class TallyJob(Section):
    kind = "tally"
    dataset: str

    def dataset_of(self, party: str) -> str:
        return self.dataset

    def scope_of(self, party: str) -> tuple[Window | None, Filters]:
        return None, ()


@dataclass(frozen=True)
class Counts(LocalInput):
    values: np.ndarray


class Tally(JobKind):
    """Each party's count per box, summed and released under the small-cell rule."""

    name = TallyJob.kind

    def parse(self, f: Fields, parties: tuple[str, ...]) -> TallyJob:
        table = f.table("tally")
        assert table is not None
        boxes = table.int("boxes", minimum=1)
        dataset = table.str("dataset")
        table.done()
        return TallyJob(group_by=("box",), categories=(("box", tuple(map(str, range(boxes)))),),
                        dataset=dataset)

    def local_input(self, spec: UseCaseSpec, config: Any) -> Counts:
        raise NotImplementedError  # the test hands the input in

    def compute(self, mpc: Any, job: JobContext, prepared: Any) -> Any:
        from mpc.protocols.aggregate import Released
        from mpc.protocols.disclosure import keep_mask

        parts = mpc.share_from_each(torch.from_numpy(prepared.values))
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        keep = keep_mask(mpc, total, None, job.rules)
        return Released(keep=keep, value=total * keep)

    def measure_words(self, spec: UseCaseSpec) -> str:
        return "number of tallies"

    def rules_words(self, spec: UseCaseSpec, rules: DisclosureRules) -> str:
        return "Each box sums the parties' tallies."


SPEC = b"""
name = "t"
kind = "tally"
parties = ["a", "b", "c"]
[tally]
boxes = 4
dataset = "d"
[disclosure]
min_cell = 5
"""


@pytest.fixture
def tally(monkeypatch: pytest.MonkeyPatch) -> JobKind:
    kind = Tally()
    monkeypatch.setitem(KINDS, kind.name, kind)  # the one registry line, for this test
    return kind


def program(ctx: Any, io: Any, spec: UseCaseSpec, values: np.ndarray) -> Any:
    job = JobContext(spec=spec, rules=spec.disclosure, party=spec.parties[io.rank],
                     rank=io.rank, link=io, audit=None, phase=lambda _: None)
    kind = kind_of(spec.job)
    released = kind.compute(ctx, job, kind.prepare(job, Counts("", b"", values[io.rank])))
    return ctx.open_to(released.keep, 0), ctx.open_to(released.value, 0)


def test_a_registered_kind_runs_end_to_end_through_the_projects_code(tally: JobKind) -> None:
    spec = parse_spec(SPEC)
    assert spec.kind == "tally" and kind_of(spec.job) is tally and spec.cells == 4
    assert spec.dataset_of("b") == "d" and spec.released_size == 4
    assert measure_words(spec) == "number of tallies"
    values = np.array([[1, 0, 4, 2], [1, 0, 4, 2], [1, 0, 4, 9]], dtype=np.int64)
    keep, value = run_in_threads(program, 3, args=(spec, values), with_io=True)[0]
    assert keep.tolist() == [0, 1, 1, 1] and value.tolist() == [0, 0, 12, 13]


def test_an_unregistered_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown kind 'tally' .*aggregate, linkage, overlap"):
        parse_spec(SPEC)
