"""The interface every job kind implements, and what the job process hands it.

A job kind is one module under mpc/kinds/ with:
- its spec section, a frozen dataclass subclassing `Section` (the spec is a tagged union of
  these, `UseCaseSpec.job`), parsed by `JobKind.parse`;
- its local input (`JobKind.local_input`, read within the party's bounds);
- its part of the joint computation: `prepare` (before the engine session, e.g. blinding
  lists over the mesh) and `compute` (inside it, returning what may be released);
- its dealer part, if the dealer takes part (`DealerPart`);
- its words for the report and the terminal.

The registry (mpc/kinds/__init__.py) maps kind names to these objects. Nothing outside
mpc/kinds/ compares a kind name (tests/kinds/test_registry.py scans for it).

The spec parser imports the registry, so kind modules import their runtime parts (connectors,
protocols, torch) inside the methods that use them, never at module level.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from mpc.config.fields import Fields
from mpc.config.rules import COUNT, DisclosureRules, Measure
from mpc.config.scope import Categories, Filters, Window

if TYPE_CHECKING:
    import numpy as np
    import torch

    from mpc.audit.recorder import JobRecorder
    from mpc.config.party import PartyConfig
    from mpc.config.spec import UseCaseSpec
    from mpc.engine.secret import MpcContext
    from mpc.protocols.aggregate import Released
    from mpc.protocols.linkage import LinkIO

Phase = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Section:
    """A kind's own part of a spec: the released table's columns and categories, and the
    fields only this kind has (subclasses)."""

    kind: ClassVar[str]
    group_by: tuple[str, ...]
    categories: Categories  # in group_by order
    measure: Measure = Measure(COUNT)  # what a cell holds

    def dataset_of(self, party: str) -> str:
        """The dataset `party` computes on."""
        raise NotImplementedError

    def scope_of(self, party: str) -> tuple[Window | None, Filters]:
        """The window and filters applied to `party`'s rows."""
        raise NotImplementedError

    def persons(self) -> PersonList | None:
        """The person lists this kind exchanges, if any: the policy checks them against the
        party's list bound."""
        return None

    def query(self) -> dict[str, Any]:
        """What the release ledger compares besides groups, categories, measure and rules:
        the kind's own fields that change what is counted."""
        return {}


@dataclass(frozen=True, kw_only=True)
class InputSection(Section):
    """A section that reads every party's rows of one dataset, in the job's `[input]`
    scope (the same for every party)."""

    dataset: str
    window: Window | None = None
    filters: Filters = ()

    def dataset_of(self, party: str) -> str:
        return self.dataset

    def scope_of(self, party: str) -> tuple[Window | None, Filters]:
        return self.window, self.filters


class Opened(Protocol):
    """A release as its recipient opened it (report/table.py's ReleasedTable): the kind
    lays out its result files from it."""

    @property
    def spec(self) -> UseCaseSpec: ...
    @property
    def keep(self) -> np.ndarray: ...
    @property
    def value(self) -> np.ndarray: ...


@dataclass(frozen=True)
class PersonList:
    key: str  # the column that identifies a person
    pad_to: int  # public bound: every list is padded to this many persons


@dataclass(frozen=True)
class LocalInput:
    """What a party computed locally: `detail` is shown as progress (never counts),
    `committed` are the canonical bytes it commits to in its audit log."""

    detail: str
    committed: bytes


@dataclass(frozen=True)
class JobContext:
    """Everything a kind's joint computation may use, built once by the job process."""

    spec: UseCaseSpec
    rules: DisclosureRules  # the agreed rules: the spec's raised to every party's floors
    party: str
    rank: int
    link: LinkIO  # the job's peer and dealer channels
    audit: JobRecorder
    phase: Phase  # reports progress: "sharing", "computing", "disclosure" or a detail

    @property
    def job_id(self) -> str:
        return self.link.job_id


@dataclass(frozen=True)
class DealerPart:
    """The dealer's side of a kind that hands it lists of blinded points.

    `parts` are the outcome pieces a party fetches, in the order `outcome` returns them."""

    parts: tuple[str, ...]

    def wanted(self, parties: int) -> set[str]:
        """The names of the lists the dealer waits for."""
        raise NotImplementedError

    def hands_over(self, parties: int, rank: int, name: str) -> bool:
        """Whether `rank` is the party that hands over list `name`."""
        raise NotImplementedError

    def params_problem(self, parties: int, widths: tuple[int, ...], pad_to: int) -> str | None:
        """What is wrong with the public parameters a party sends, if anything."""
        raise NotImplementedError

    def outcome(self, job_id: str, seeds: list[bytes], lists: dict[str, bytes],
                widths: tuple[int, ...], pad_to: int) -> list[list[torch.Tensor]]:
        """Per rank, the outcome pieces in `parts` order; ValueError if the lists are
        malformed."""
        raise NotImplementedError


class JobKind(ABC):
    """One job kind: see the module docstring."""

    name: ClassVar[str]
    scalar: ClassVar[str | None] = None  # the value released after the cells, if any
    scalar_label: ClassVar[str | None] = None  # ...in the report's words
    takes_noise: ClassVar[bool] = False  # [disclosure.noise]
    takes_contributor_rule: ClassVar[bool] = False  # min_contributors > 1
    suppress_zero_default: ClassVar[bool] = False
    takes_rounding: ClassVar[bool] = True  # [disclosure] round_to applies to every value
    row_words: ClassVar[str] = "cells"  # what a row of result.csv is
    dealer: ClassVar[DealerPart | None] = None

    @abstractmethod
    def parse(self, f: Fields, parties: tuple[str, ...]) -> Section:
        """This kind's spec section (its own tables and `[categories]`)."""

    @abstractmethod
    def local_input(self, spec: UseCaseSpec, config: PartyConfig) -> LocalInput:
        """This party's input, read where its data lives within its own bounds. Nothing in
        the job's scope may fail it: an empty scope is zeros or an empty list."""

    def prepare(self, job: JobContext, local: LocalInput) -> Any:
        """The part of the computation before the engine session (default: nothing)."""
        return local

    @abstractmethod
    def compute(self, mpc: MpcContext, job: JobContext, prepared: Any) -> Released:
        """Inside the engine session: the secret shares of what may be released."""

    def released_size(self, spec: UseCaseSpec) -> int:
        """How many values a release holds (default: the cells, then the scalar if any)."""
        return spec.cells + (1 if self.scalar else 0)

    def counted_values(self, spec: UseCaseSpec) -> tuple[int, int]:
        """(start, step) of the released values that are counts under the small-cell rules
        (the auditor checks those against min_cell); default: every value."""
        return 0, 1

    def result_files(self, table: Opened) -> dict[str, tuple[list[str],
                                                                   list[dict[str, Any]]]]:
        """The CSV files a recipient writes, file name -> (columns, rows); the first is the
        result. Default: result.csv with one row per cell, its value or None."""
        spec = table.spec
        rows = []
        for combo, keep, value in zip(spec.category_rows(), table.keep[: spec.cells],
                                      table.value[: spec.cells], strict=True):
            row: dict[str, Any] = dict(zip(spec.group_by, combo, strict=True))
            row["value"] = int(value) if keep else None
            row["suppressed"] = not bool(keep)
            rows.append(row)
        return {"result.csv": ([*spec.group_by, "value", "suppressed"], rows)}

    @abstractmethod
    def measure_words(self, spec: UseCaseSpec) -> str:
        """What a cell counts, in words."""

    def terminal_title(self, spec: UseCaseSpec) -> str:
        """What a cell holds, in the terminal table's title."""
        return self.measure_words(spec)

    @abstractmethod
    def rules_words(self, spec: UseCaseSpec, rules: DisclosureRules) -> str:
        """What the released numbers are, for the report's disclosure paragraph."""
