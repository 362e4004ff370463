"""Fixtures: generated data and real federations (separate processes, mutual TLS, loopback)."""

from __future__ import annotations

import json
import shutil
import time
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mpc.audit.log import AuditLog
from mpc.config.federation import load_federation
from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.demo import LocalFederation, PartySetup, demo_bounds
from mpc.runner.coordinator import Coordinator, JobOutcome
from mpc.synth import generate_federation, generate_treatments
from mpc.transport.tls import TlsIdentity
from tests.helpers import spec_text, treatments_from_omop
from tests.pg import Postgres, postgres_server
from tests.tamper import AUDITED_PARTIES

# Bounds of the generated `treatments` files in most tests: they ask many questions of one
# dataset, so the differencing check is off (tests/integration/test_ledger.py and
# tests/redteam/ test it on).
TEST_BOUNDS = {"ledger": False, "person_key": "pseudonym", "max_persons": 10_000,
               "clip": {"cycles": [0, 1000]}}
FIVE = ["hospital_a", "hospital_b", "hospital_c", "hospital_d", "hospital_e"]


# ---- markers: `unit` (no processes, no servers) and `integration` ----------------------

# Fixtures that start processes or servers: federations (workers, dealer, coordinator),
# PostgreSQL, in-process gRPC dealers. `case` depends on `honest`, so it is caught too.
SERVER_FIXTURES = frozenset({"postgres", "federation5", "honest", "worlds", "harness",
                             "dealer", "audited"})
# Names a test's own code calls to start processes or servers.
SERVER_CALLS = frozenset({"run_local_parties", "start_federation", "generated_federation",
                          "LocalFederation", "start_dealer", "postgres_server", "PeerMesh",
                          "subprocess", "Popen", "multiprocessing", "chromium", "playwright"})
INTEGRATION_FOLDERS = ("integration", "redteam")
# Tests that start processes through a call no name above shows: blind(..., workers=2)
# runs the spawn pool of mpc/protocols/blind.py.
STARTS_PROCESSES = frozenset({
    "tests/protocols/test_blind.py::test_pool_path_matches_inline_and_commutes",
    "tests/protocols/test_blind.py::test_pool_error_names_global_position",
})


def _names_used(code: types.CodeType) -> set[str]:
    """Global and attribute names a function's code (and the functions it defines) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names_used(const)
    return names


def _starts_processes(item: pytest.Item) -> bool:
    path, tests = Path(str(item.path)), Path(__file__).parent
    folder = path.relative_to(tests).parts[0] if path.is_relative_to(tests) else ""
    if folder in INTEGRATION_FOLDERS or item.get_closest_marker("integration"):
        return True
    if item.nodeid.split("[")[0] in STARTS_PROCESSES:
        return True
    fixtures = set(getattr(item, "fixturenames", ()))
    # A fixture parametrized by a server fixture's name that it then requests (the
    # connectors' `writer` fixtures: request.getfixturevalue("postgres")); not the test's
    # own @pytest.mark.parametrize values.
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        direct: set[str] = set()
        for mark in item.iter_markers("parametrize"):
            names = mark.args[0] if mark.args else mark.kwargs["argnames"]
            direct |= ({n.strip() for n in names.split(",")} if isinstance(names, str)
                       else set(names))
        fixtures |= {v for k, v in callspec.params.items()
                     if k not in direct and isinstance(v, str)}
    if fixtures & SERVER_FIXTURES:
        return True
    function = getattr(item, "function", None)
    code = getattr(function, "__code__", None)
    return code is not None and bool(_names_used(code) & SERVER_CALLS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration if _starts_processes(item)
                        else pytest.mark.unit)


class Harness:
    """A running federation plus a coordinator to submit jobs to it."""

    def __init__(self, fed: LocalFederation, files: Mapping[str, Path]) -> None:
        self.fed = fed
        self.files = dict(files)
        self.federation = load_federation(fed.federation_file)
        assert self.federation.coordinator_tls is not None
        self.identity = TlsIdentity.load(self.federation.coordinator_tls)
        own = self.federation.own
        assert own.signing_key is not None and own.audit_log is not None
        self.audit = AuditLog.open(own.audit_log, own.signing_key, "coordinator", "coordinator")
        self.phases: list[tuple[str, str]] = []

    def run(self, spec_bytes: bytes, timeout_s: float = 180.0, progress: Any = None
            ) -> JobOutcome:
        return self.run_parsed(parse_spec(spec_bytes), timeout_s, progress)

    def run_parsed(self, spec: UseCaseSpec, timeout_s: float = 180.0, progress: Any = None
                   ) -> JobOutcome:
        """Run `spec` as it is: its text may be bytes the coordinator's parser would refuse
        (what a coordinator that skips its own checks sends)."""
        def record(party: str, phase: str, detail: str) -> None:
            self.phases.append((party, phase))
            if progress is not None:
                progress(party, phase, detail)

        coordinator = Coordinator(self.federation, self.identity, record, timeout_s=timeout_s,
                                  audit=self.audit)
        return coordinator.run(spec)

    def audit_events_of(self, member: str) -> list[dict[str, Any]]:
        path = self.fed.logs / f"{member}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def audit_events(self, party: str, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.audit_events_of(party) if e.get("job") == job_id]

    def assert_aborted_everywhere(self, job_id: str, skip: tuple[str, ...] = (),
                                  parties: list[str] | None = None) -> None:
        """Every (surviving) worker of the job records its end as an abort or a refusal,
        soon, and no party holds a result file."""
        deadline = time.monotonic() + 15
        for party in parties or self.fed.parties:
            if party in skip:
                continue
            while True:
                events = self.audit_events(party, job_id)
                names = {e["event"] for e in events}
                refused = any(e["event"] == "policy_decision" and not e["approved"]
                              for e in events)
                if "job_aborted" in names or refused:
                    break
                assert time.monotonic() < deadline, f"{party} never recorded the abort: {names}"
                time.sleep(0.2)
            assert "job_end" not in names
        assert not list((self.fed.root / "results").rglob("result.*"))


def start_federation(root: Path, files: Mapping[str, Path], usecases: list[str],
                     env: Mapping[str, str] | None = None,
                     setups: Mapping[str, PartySetup] | None = None) -> LocalFederation:
    """A running federation: `files` as every party's `treatments`, or `setups` as given.
    A dataset whose setup names no bounds gets TEST_BOUNDS if it is `treatments` (the
    generated files' shape), and no differencing check otherwise."""
    setups = dict(setups or {})
    for party, path in files.items():
        setups.setdefault(party, PartySetup({"treatments": {"path": str(path)}}, usecases))
    for setup in setups.values():
        setup.bounds = {name: setup.bounds.get(name, TEST_BOUNDS if name == "treatments"
                                               else {"ledger": False})
                        for name in setup.datasets}
    return LocalFederation(root, setups, env=env).start()


@contextmanager
def generated_federation(root: Path, usecases: Sequence[str], *,
                         ledger: bool = False,
                         bounds: Mapping[str, Mapping[str, Any]] | None = None, **generate: Any
                         ) -> Iterator[tuple[Harness, dict[str, pd.DataFrame]]]:
    """Generated data (OMOP at hospitals, claims at insurers, dispensing at pharmacies), a
    running federation serving `usecases` on it with the demo's bounds, and each party's
    rows as a pandas frame for the plaintext reference. `ledger`: whether the parties
    refuse differencing (off by default: most tests ask many questions of one dataset);
    `bounds`: per dataset, fields that replace the demo's. `generate`: generate_federation's
    options."""
    data = generate_federation(root / "data", **generate)

    def setup(datasets: dict[str, dict[str, str]]) -> PartySetup:
        return PartySetup(datasets, usecases,
                          bounds={d: demo_bounds(d, ledger=ledger, **(bounds or {}).get(d, {}))
                                  for d in datasets})

    # A hospital's OMOP folder is two datasets: its treatments and its treatment episodes.
    setups = {h: setup({"treatments": {"omop": str(f)}, "treatment_episodes": {"omop": str(f)}})
              for h, f in data.hospitals.items()}
    setups |= {i: setup({"claims": {"path": str(f)}}) for i, f in data.insurers.items()}
    setups |= {p: setup({"dispensing": {"path": str(f)}}) for p, f in data.pharmacies.items()}
    frames = {h: treatments_from_omop(f) for h, f in data.hospitals.items()}
    frames |= {p: pd.read_csv(f, dtype=str).assign(packs=lambda d: d.packs.astype(int))
               for p, f in data.pharmacies.items()}
    frames |= {i: pd.read_csv(f, dtype=str) for i, f in data.insurers.items()}
    fed = start_federation(root / "fed", {}, [], setups=setups)
    try:
        yield Harness(fed, {}), frames
    finally:
        fed.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the whole session (see tests/pg.py)."""
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def five_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Five hospitals of different sizes with shared patients and some small cells."""
    return generate_treatments(tmp_path_factory.mktemp("data5"), FIVE, patients_per_party=400,
                               seed=11)


@pytest.fixture(scope="module")
def federation5(tmp_path_factory: pytest.TempPathFactory,
                five_files: dict[str, Path]) -> Iterator[Harness]:
    fed = start_federation(tmp_path_factory.mktemp("fed5"), five_files,
                           ["product-use", "product-use-3"])
    try:
        yield Harness(fed, five_files)
    finally:
        fed.stop()


# ---- a finished federation whose audit logs the audit and red-team tests tamper with ----

@pytest.fixture(scope="session")
def honest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished federation: its folder holds logs/, certs/ and federation.toml."""
    root = tmp_path_factory.mktemp("audited")
    files = generate_treatments(root / "data", AUDITED_PARTIES, patients_per_party=400, seed=31)
    fed = start_federation(root / "fed", files, ["product-use", "refused-by-b"])
    try:
        harness = Harness(fed, files)
        outcome = harness.run(spec_text("product-use", AUDITED_PARTIES, min_contributors=3))
        assert outcome.table is not None and outcome.table.suppressed_cells > 0
    finally:
        fed.stop()
    yield fed.root


@pytest.fixture()
def case(honest: Path, tmp_path: Path) -> Path:
    """A copy of the honest logs and federation file to tamper with, without the certs
    (an auditor elsewhere has only these); the signing keys stay with the original."""
    shutil.copytree(honest / "logs", tmp_path / "logs")
    shutil.copy(honest / "federation.toml", tmp_path / "federation.toml")
    return tmp_path
