"""The job process's own logic, in this process: its control thread (orders, progress),
how run_job reports a failure, the start order's rules against the spec and this party's
floors, and the exchange of log heads at the end. The pipe is a fake connection, the peer
mesh a fake that never listens, and `os._exit` a recorder: nothing here starts a process
or opens a socket. Data, certificates and the audit log are real files in a tmp folder."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc.audit.events import AuditEvent
from mpc.audit.log import AuditLog, Head, iter_entries
from mpc.audit.recorder import JobRecorder
from mpc.config.party import PartyConfig, load_party_config
from mpc.config.rules import DisclosureRules
from mpc.config.spec import UseCaseSpec, parse_spec
from mpc.errors import (
    Code,
    DataError,
    PeerAbort,
    PeerLost,
    PolicyRefused,
    ProtocolAbort,
    TransportError,
)
from mpc.phases import Phase
from mpc.synth import generate_treatments
from mpc.transport.pki import issue_member, make_ca
from mpc.worker import job_process
from mpc.worker.job_events import AbortOrder, Failed, Progress, Ready, StartOrder
from mpc.worker.job_process import _Control, _exchange_heads, run_job
from tests.helpers import spec_text

PARTY = "hospital_a"
PARTIES = ("hospital_a", "hospital_b", "hospital_c")
JOB = "job-0000000000000001"
ENDPOINTS = {0: "127.0.0.1:9100", 1: "127.0.0.1:9101", 2: "127.0.0.1:9102"}
SOCKET = "/run/mpc-worker/job-test.sock"  # the fake mesh never binds it
FLOORS = DisclosureRules(min_cell=15, min_contributors=2)
HASH, SIG = "a" * 64, "s" * 86 + "=="
NOISE = 'noise = { mechanism = "discrete_laplace", epsilon = 1.0 }\n'


def spec_bytes(min_cell: int = 10, suppress_zero: bool = False, noise: bool = False) -> bytes:
    text = spec_text("product-use", PARTIES, group_by=("product", "line"), min_cell=min_cell,
                     suppress_zero=suppress_zero)
    return text + NOISE.encode() if noise else text  # the last table is [disclosure]


# ---- fakes: the pipe, os._exit, the peer mesh ---------------------------------------------

_EOF = object()


class FakeConn:
    """The job's end of its pipe: `sent` is what went up; `order` queues what comes down;
    once closed (by either end) a reader gets EOFError, as from a real pipe."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False
        self.readers: list[threading.Thread] = []
        self._down: queue.Queue[Any] = queue.Queue()

    def send(self, obj: Any) -> None:
        if self.closed:
            raise OSError("handle is closed")
        self.sent.append(obj)

    def recv(self) -> Any:
        self.readers.append(threading.current_thread())
        item = self._down.get()
        if item is _EOF:
            self._down.put(_EOF)
            raise EOFError
        return item

    def order(self, order: Any) -> None:
        self._down.put(order)

    def close(self) -> None:
        self.closed = True
        self._down.put(_EOF)


class Exits:
    """os._exit, recorded: the code and the thread that called it (it returns)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def __call__(self, code: int) -> None:
        self.calls.append((code, threading.current_thread().name))

    def codes(self) -> list[int]:
        return [code for code, _ in self.calls]


class FakeMesh:
    """The peer mesh as far as a job gets before it connects, or at its end."""

    made: list[FakeMesh] = []

    def __init__(self, job_id: str = JOB, rank: int = 0, parties: tuple[str, ...] = PARTIES,
                 *args: Any, **kwargs: Any) -> None:
        self.job_id, self.rank, self.parties = job_id, rank, tuple(parties)
        self.args, self.kwargs = args, kwargs
        self.aborts: list[str] = []
        self.connects: list[dict[int, str]] = []
        self.sent: list[tuple[int, Any, str]] = []
        self.heads: dict[int, Any] = {}
        FakeMesh.made.append(self)

    @property
    def peers(self) -> list[int]:
        return [r for r in range(len(self.parties)) if r != self.rank]

    def listen_local(self, path: str) -> str:
        self.socket = path
        return path

    def connect(self, endpoints: dict[int, str], timeout_s: float) -> None:
        self.connects.append(dict(endpoints))
        raise TransportError("the test stops the job at connect")

    def abort(self, reason: str) -> None:
        self.aborts.append(reason)

    def send_object(self, rank: int, obj: Any, tag: str) -> None:
        self.sent.append((rank, obj, tag))

    def recv_object(self, rank: int, tag: str) -> Any:
        assert tag == "audit/head"
        return self.heads[rank]


Pipe = tuple[Callable[[], FakeConn], Exits]  # what the `pipe` fixture gives


@pytest.fixture()
def pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipe]:
    """Fake connections, and os._exit as the job process module sees it, recorded. At the
    end every connection is closed and its control thread has ended, before os._exit is
    the real one again."""
    exits = Exits()
    monkeypatch.setattr(job_process, "os", SimpleNamespace(_exit=exits))
    conns: list[FakeConn] = []

    def make() -> FakeConn:
        conns.append(FakeConn())
        return conns[-1]

    try:
        yield make, exits
    finally:
        for conn in conns:
            conn.close()
            for reader in conn.readers:
                reader.join(timeout=5)
                assert not reader.is_alive()


def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# ---- a real party: certificates, signing key, data, config --------------------------------

@pytest.fixture(scope="module")
def party_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("party")
    ca, ca_key = make_ca(root / "certs")
    issue_member(root / "certs", PARTY, "party", ca, ca_key)
    generate_treatments(root / "data", [PARTY], patients_per_party=30, seed=5)
    return root


def party_config(root: Path, floors: DisclosureRules = FLOORS) -> PartyConfig:
    config = {
        "name": PARTY, "listen": "127.0.0.1:7001",
        "tls": {"ca": "certs/ca.pem", "cert": f"certs/{PARTY}.pem", "key": f"certs/{PARTY}.key"},
        "signing": {"key": f"certs/{PARTY}.sign.key"},
        "audit": {"log": "logs/hospital_a.jsonl"},
        "datasets": {"treatments": {"path": f"data/{PARTY}/treatments.csv",
                                    "bounds": {"ledger": False}}},
        "policy": {"coordinators": ["coordinator"], "usecases": ["product-use"],
                   "min_cell_floor": floors.min_cell,
                   "min_contributors_floor": floors.min_contributors},
    }
    path = root / f"floors-{floors.min_cell}-{floors.min_contributors}.toml"
    path.write_text(tomli_w.dumps(config))
    return load_party_config(path)


@pytest.fixture()
def config(party_root: Path) -> PartyConfig:
    return party_config(party_root)


@pytest.fixture()
def spec() -> UseCaseSpec:
    return parse_spec(spec_bytes())


# ---- the control thread -------------------------------------------------------------------

@pytest.mark.parametrize(("step", "event"), [
    ("sharing", Progress(Phase.SHARING)),
    ("computing", Progress(Phase.COMPUTING)),
    ("disclosure", Progress(Phase.DISCLOSURE)),
    ("blinding", Progress(Phase.COMPUTING, detail="blinding")),
    ("matching", Progress(Phase.COMPUTING, detail="matching")),
    # a worker phase, but not one a protocol reports: only a detail of computing
    ("connected", Progress(Phase.COMPUTING, detail="connected")),
])
def test_a_protocol_step_is_reported_as_its_phase_or_as_computing(
        pipe: Pipe, step: str, event: Progress) -> None:
    make, _ = pipe
    conn = make()
    _Control(conn).phase(step)
    assert conn.sent == [event]


def test_start_orders_are_queued_for_the_job(pipe: Pipe
                                             ) -> None:
    make, exits = pipe
    conn = make()
    control = _Control(conn)
    order = StartOrder(ENDPOINTS, "127.0.0.1:9200", FLOORS)
    conn.order(order)
    assert control.starts.get(timeout=5) == order
    assert exits.calls == []


def test_an_abort_order_aborts_the_mesh_and_exits(pipe: Pipe
                                                  ) -> None:
    make, exits = pipe
    conn = make()
    control = _Control(conn)
    control.mesh = FakeMesh()  # type: ignore[assignment]
    conn.order(AbortOrder("hospital_b refused"))
    wait_for(lambda: bool(exits.calls))
    assert control.mesh.aborts == ["hospital_b refused"]  # type: ignore[union-attr]
    assert exits.calls == [(2, "job-control")]
    assert control.starts.empty()


def test_an_abort_before_the_mesh_exits_all_the_same(pipe: Pipe
                                                     ) -> None:
    make, exits = pipe
    conn = make()
    _Control(conn)
    conn.order(AbortOrder("the coordinator went away"))
    wait_for(lambda: bool(exits.calls))
    assert exits.codes() == [2]


def test_a_closed_pipe_means_the_worker_is_gone(pipe: Pipe
                                                ) -> None:
    make, exits = pipe
    conn = make()
    _Control(conn)
    conn.close()
    wait_for(lambda: bool(exits.calls))
    assert exits.calls == [(3, "job-control")]


# ---- how run_job reports a failure --------------------------------------------------------

def run_failing(pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
                config: PartyConfig, spec: UseCaseSpec, exc: BaseException | None,
                mesh: FakeMesh | None = None) -> FakeConn:
    """run_job with a `_run` that raises `exc` (None: returns) once the mesh is set."""
    make, _ = pipe
    conn = make()

    def fake_run(control: _Control, *args: Any) -> None:
        assert args == (config, spec, JOB, "coordinator", SOCKET)
        control.mesh = mesh  # type: ignore[assignment]
        if exc is not None:
            raise exc

    monkeypatch.setattr(job_process, "_run", fake_run)
    run_job(conn, config, spec, JOB, "coordinator", SOCKET)  # type: ignore[arg-type]
    return conn


@pytest.mark.parametrize(("exc", "expected"), [
    (DataError(PARTY, "treatments", "no such file"),
     Failed(Code.DATA, PARTY, "hospital_a: dataset 'treatments': no such file")),
    (PolicyRefused(PARTY, "the rules are weaker"),
     Failed(Code.POLICY, PARTY, "hospital_a refused the job: the rules are weaker")),
    (ProtocolAbort("party hospital_b sent a malformed log head"),
     Failed(Code.PROTOCOL, PARTY, "party hospital_b sent a malformed log head")),
])
def test_an_mpc_error_is_reported_with_its_code_and_message(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec, exc: Exception, expected: Failed) -> None:
    mesh = FakeMesh()
    conn = run_failing(pipe, monkeypatch, config, spec, exc, mesh)
    assert conn.sent == [expected]
    assert mesh.aborts == [expected.message]  # the peers hear this party's own reason
    assert conn.closed and 0 in pipe[1].codes()


@pytest.mark.parametrize("exc", [ValueError("patient 123456789 has no birth date"),
                                 KeyError("123456789"), KeyboardInterrupt()])
def test_any_other_error_is_internal_and_names_only_its_type(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec, exc: BaseException) -> None:
    mesh = FakeMesh()
    conn = run_failing(pipe, monkeypatch, config, spec, exc, mesh)
    reason = f"internal error ({type(exc).__name__})"
    assert conn.sent == [Failed(Code.INTERNAL, PARTY, reason)]
    assert mesh.aborts == [reason]
    assert not any("123456789" in str(x) for x in (*conn.sent, *mesh.aborts))


@pytest.mark.parametrize(("exc", "code"), [
    (PeerLost("hospital_b", PARTY), Code.LOST),
    (PeerAbort("hospital_c", "its policy refused the job"), Code.PEER),
])
def test_a_peer_fault_names_the_peer(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec, exc: PeerLost | PeerAbort, code: Code) -> None:
    mesh = FakeMesh()
    conn = run_failing(pipe, monkeypatch, config, spec, exc, mesh)
    assert conn.sent == [Failed(code, exc.party, str(exc))]
    assert mesh.aborts == [f"{exc.party}: {exc}"]


def test_a_failure_before_the_mesh_is_reported_all_the_same(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec) -> None:
    conn = run_failing(pipe, monkeypatch, config, spec, DataError(PARTY, "treatments", "bad"))
    assert [type(e) for e in conn.sent] == [Failed] and conn.closed


def test_a_job_that_ends_well_reports_nothing_more_and_exits(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec) -> None:
    mesh = FakeMesh()
    conn = run_failing(pipe, monkeypatch, config, spec, None, mesh)
    assert conn.sent == [] and mesh.aborts == []
    assert conn.closed and (0, threading.current_thread().name) in pipe[1].calls


# ---- the start order's rules against the spec and this party's floors ----------------------

def run_to_start(pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
                 config: PartyConfig, spec: UseCaseSpec, rules: DisclosureRules
                 ) -> tuple[FakeConn, FakeMesh]:
    """The real _run (real data, certificates and log) on a fake mesh, given a start order
    with `rules`; the fake mesh stops the job when it is asked to connect."""
    make, _ = pipe
    conn = make()
    FakeMesh.made.clear()
    monkeypatch.setattr(job_process, "PeerMesh", FakeMesh)
    monkeypatch.setattr(job_process, "recorder_from_env", lambda name: None)
    conn.order(StartOrder(ENDPOINTS, "127.0.0.1:9200", rules))
    run_job(conn, config, spec, JOB, "coordinator", SOCKET)  # type: ignore[arg-type]
    [mesh] = FakeMesh.made
    return conn, mesh


WEAKER = "hospital_a refused the job: the coordinator's disclosure rules are weaker than " \
         "the spec with this party's floors"


@pytest.mark.parametrize("rules", [
    DisclosureRules(min_cell=10, min_contributors=2),  # the spec's min_cell, not the floor
    DisclosureRules(min_cell=14, min_contributors=2),
    DisclosureRules(min_cell=15, min_contributors=1),  # below the contributor floor
    DisclosureRules(min_cell=1000, min_contributors=1),
])
def test_rules_weaker_than_the_spec_with_the_floors_are_refused(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec, rules: DisclosureRules) -> None:
    conn, mesh = run_to_start(pipe, monkeypatch, config, spec, rules)
    assert conn.sent == [Progress(Phase.LOCAL_TABLE, detail="9 cells"),
                         Ready(SOCKET, FLOORS),
                         Failed(Code.POLICY, PARTY, WEAKER)]
    assert mesh.connects == [] and mesh.aborts == [WEAKER]
    assert (mesh.job_id, mesh.rank, mesh.parties) == (JOB, 0, PARTIES)
    # nothing of the session was recorded
    assert not [e for e in iter_entries(config.audit_log) if e.get("job") == JOB]


def test_a_zero_suppression_the_spec_asks_for_cannot_be_dropped(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig) -> None:
    spec = parse_spec(spec_bytes(suppress_zero=True))
    conn, mesh = run_to_start(pipe, monkeypatch, config, spec,
                              DisclosureRules(min_cell=15, min_contributors=2))
    assert conn.sent[-1] == Failed(Code.POLICY, PARTY, WEAKER) and mesh.connects == []


@pytest.mark.parametrize("rules", [
    DisclosureRules(min_cell=15, min_contributors=2),  # exactly the spec with the floors
    DisclosureRules(min_cell=20, suppress_zero=True, min_contributors=3),
])
def test_rules_at_least_as_strict_go_on_to_connect(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        config: PartyConfig, spec: UseCaseSpec, rules: DisclosureRules) -> None:
    conn, mesh = run_to_start(pipe, monkeypatch, config, spec, rules)
    assert mesh.connects == [ENDPOINTS]
    assert conn.sent[-1] == Failed(Code.TRANSPORT, PARTY, "the test stops the job at connect")


def test_a_noisy_release_refuses_the_contributor_rule(
        pipe: Pipe, monkeypatch: pytest.MonkeyPatch,
        party_root: Path) -> None:
    config = party_config(party_root, DisclosureRules(min_cell=15, min_contributors=1))
    spec = parse_spec(spec_bytes(noise=True))
    assert spec.noise is not None
    conn, mesh = run_to_start(pipe, monkeypatch, config, spec,
                              DisclosureRules(min_cell=15, min_contributors=2))
    assert conn.sent[-1] == Failed(
        Code.POLICY, PARTY, "hospital_a refused the job: the contributor rule cannot be "
                            "applied to a noisy release; the job is refused rather than drop it")
    assert mesh.connects == []


# ---- the exchange of log heads ------------------------------------------------------------

@pytest.fixture()
def recorder(tmp_path: Path) -> JobRecorder:
    log = AuditLog(tmp_path / f"{PARTY}.jsonl", Ed25519PrivateKey.generate(), PARTY, "party")
    return JobRecorder(log, JOB, PARTY)


def peer_heads(recorder: JobRecorder) -> list[dict[str, Any]]:
    return [e for e in iter_entries(recorder.log.path) if e["event"] == AuditEvent.PEER_HEADS]


def test_heads_are_sent_to_every_peer_and_theirs_recorded(recorder: JobRecorder) -> None:
    recorder.add(AuditEvent.JOB_END, dealer_requests=3)
    mesh = FakeMesh(rank=1)
    mesh.heads = {0: ["hospital_a", 4, HASH, SIG], 2: ["hospital_c", 9, "b" * 64, SIG]}
    _exchange_heads(mesh, recorder)  # type: ignore[arg-type]
    recorder.flush()
    end, entry = iter_entries(recorder.log.path)
    # this party's head as it stood before the exchange: at the job's end
    mine = Head(PARTY, end["seq"], end["hash"], end["sig"])
    assert end["event"] == AuditEvent.JOB_END and entry["event"] == AuditEvent.PEER_HEADS
    assert mesh.sent == [(r, [mine.member, mine.seq, mine.hash, mine.sig], "audit/head")
                         for r in (0, 2)]
    assert entry["heads"] == [
        {"member": "hospital_a", "seq": 4, "hash": HASH, "sig": SIG},
        {"member": "hospital_c", "seq": 9, "hash": "b" * 64, "sig": SIG}]


@pytest.mark.parametrize("head", [
    {"member": "hospital_b", "seq": 4, "hash": HASH, "sig": SIG},  # not a list
    ("hospital_b", 4, HASH, SIG),  # a list, exactly
    ["hospital_b", 4, HASH],
    ["hospital_b", 4, HASH, SIG, "extra"],
    ["hospital_b", "4", HASH, SIG],
    ["hospital_b", 4.0, HASH, SIG],
    ["hospital_b", -1, HASH, SIG],
    ["hospital_b", 2**63, HASH, SIG],
    ["hospital_b", 4, "A" * 64, SIG],
    ["hospital_b", 4, HASH[:-1], SIG],
    ["hospital_b", 4, HASH, "not a signature"],
    ["Hospital B", 4, HASH, SIG],
    [None, 4, HASH, SIG],
    None,
])
def test_a_malformed_head_is_refused(recorder: JobRecorder, head: Any) -> None:
    recorder.add(AuditEvent.JOB_END, dealer_requests=3)
    mesh = FakeMesh(rank=0)
    mesh.heads = {1: head, 2: ["hospital_c", 9, HASH, SIG]}
    with pytest.raises(ProtocolAbort) as err:
        _exchange_heads(mesh, recorder)  # type: ignore[arg-type]
    assert str(err.value) == "party hospital_b sent a malformed log head"
    recorder.flush()
    assert peer_heads(recorder) == []


def test_the_head_of_another_member_is_refused(recorder: JobRecorder) -> None:
    recorder.add(AuditEvent.JOB_END, dealer_requests=3)
    mesh = FakeMesh(rank=0)
    mesh.heads = {1: ["hospital_b", 4, HASH, SIG], 2: ["hospital_b", 4, HASH, SIG]}
    with pytest.raises(ProtocolAbort) as err:
        _exchange_heads(mesh, recorder)  # type: ignore[arg-type]
    assert str(err.value) == "party hospital_c sent the log head of another member"
    recorder.flush()
    assert peer_heads(recorder) == []
