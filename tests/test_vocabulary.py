"""One vocabulary per concept: a party's phases (mpc/phases.py) and failure codes
(mpc/errors.py, on the wire through mpc/transport/messages.py)."""

from __future__ import annotations

import ast
import inspect
import queue
import time
from pathlib import Path

import pytest

import mpc.errors as errors
from mpc.errors import Code, JobFailed, MpcError, code_of
from mpc.phases import PROTOCOL_PHASES, Phase, label
from mpc.proto import common_pb2, worker_pb2
from mpc.transport.messages import failure_from_proto, failure_to_proto

ROOT = Path(__file__).resolve().parents[1]
Wire = worker_pb2.JobEvent
PHASES = {p.value for p in Phase}

# ---- phases ---------------------------------------------------------------------------------


def test_phase_names_are_as_before() -> None:
    assert [p.value for p in Phase] == [
        "pending", "submitted", "accepted", "local_table", "ready", "connected", "sharing",
        "computing", "disclosure", "released", "done", "failed", "exited"]


def test_every_wire_phase_maps_to_a_phase_and_back() -> None:
    wire = {v for name, v in Wire.Phase.items() if name != "PHASE_UNSPECIFIED"}
    for value in wire:
        phase = Phase.from_proto(value)
        assert phase is not None, Wire.Phase.Name(value)
        assert phase.to_proto() == value
        assert phase.value == Wire.Phase.Name(value).lower()
    on_wire = {p for p in Phase if p not in (Phase.PENDING, Phase.SUBMITTED, Phase.EXITED)}
    assert {Phase.from_proto(v) for v in wire} == on_wire


def test_what_is_not_a_wire_phase_is_none_or_refused() -> None:
    assert Phase.from_proto(Wire.PHASE_UNSPECIFIED) is None
    assert Phase.from_proto(99) is None  # a newer (or broken) worker's phase
    for phase in (Phase.PENDING, Phase.SUBMITTED, Phase.EXITED):
        with pytest.raises(ValueError, match="does not go on the wire"):
            phase.to_proto()


def test_every_phase_has_a_label() -> None:
    assert {p: p.label for p in Phase}[Phase.DISCLOSURE] == "disclosure control"
    assert all(p.label for p in Phase)
    assert label("done") == "done" and label("pending") == "waiting"
    assert label("not a phase") == "not a phase"
    assert {"sharing", "computing", "disclosure"} == PROTOCOL_PHASES


def _phase_offences(source: str) -> list[tuple[int, str]]:
    """(line, what) where a phase name is spelled as a string literal in a comparison, as
    the value of a "phase" key, or as a key of a table of phases (two or more)."""
    def phase_literals(node: ast.AST) -> list[str]:
        items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        return [e.value for e in items
                if isinstance(e, ast.Constant) and isinstance(e.value, str) and e.value in PHASES]

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found += [(node.lineno, f"compared with {s!r}")
                      for o in (node.left, *node.comparators) for s in phase_literals(o)]
        elif isinstance(node, ast.Dict):
            keys = [s for k in node.keys if k is not None for s in phase_literals(k)]
            if len(keys) >= 2:
                found.append((node.lineno, f"a table keyed by phase names {keys}"))
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "phase":
                    found += [(node.lineno, f'"phase": {s!r}') for s in phase_literals(v)]
    return found


def test_no_module_spells_a_phase_in_a_comparison_or_a_table() -> None:
    found = []
    for path in sorted((ROOT / "mpc").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[:2] == ("mpc", "proto") or rel == Path("mpc/phases.py"):
            continue
        found += [f"{rel}:{line}: {what}" for line, what in _phase_offences(path.read_text())]
    assert not found, "phase names spelled as strings; use mpc.phases.Phase:\n" + \
        "\n".join(found)


def test_the_phase_scan_finds_what_it_looks_for() -> None:
    bad = '''
if phase == "done": pass
if name in ("sharing", "computing"): pass
PHASES = {"accepted": 1, "ready": 3}
queue.put({"phase": "exited"})
'''
    assert [line for line, _ in _phase_offences(bad)] == [2, 3, 3, 4, 5]
    fine = '''
phase("computing")
row = {"released": 3, "suppressed": 1}
if phase is Phase.DONE: pass
if status == "aborted": pass
'''
    assert _phase_offences(fine) == []


# ---- failure codes --------------------------------------------------------------------------


def test_codes_are_as_before() -> None:
    assert {c.value for c in Code} == {
        "POLICY", "DATA", "CONFIG", "PEER", "UNREACHABLE", "LOST", "SILENT", "TRANSPORT",
        "DEALER", "PROTOCOL", "ENGINE", "TIMEOUT", "INTERNAL", "ABORTED", "WORKER",
        "UNKNOWN"}
    assert {c for c in Code if c.echo} == {Code.PEER, Code.TRANSPORT, Code.ABORTED}


def test_every_exception_class_has_a_code() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, MpcError) and c.__module__ == errors.__name__]
    assert len(classes) >= 14
    for cls in classes:
        assert "code" in vars(cls), f"{cls.__name__} declares no code of its own"
        assert isinstance(cls.code, Code), cls


def test_code_of_an_exception() -> None:
    expected = {
        errors.PolicyRefused("a", "r"): Code.POLICY, errors.DataError("a", "d", "m"): Code.DATA,
        errors.ConfigError("f", "m"): Code.CONFIG, errors.PeerAbort("b", "r"): Code.PEER,
        errors.PeerUnreachable("b", "addr", "a"): Code.UNREACHABLE,
        errors.PeerLost("b", "a"): Code.LOST, errors.PeerSilent("b", "a", 1.0): Code.SILENT,
        errors.TransportError("m"): Code.TRANSPORT, errors.DealerError("m"): Code.DEALER,
        errors.ProtocolAbort("m"): Code.PROTOCOL, errors.EngineError("m"): Code.ENGINE,
        errors.AuditError("m"): Code.INTERNAL, MpcError("m"): Code.INTERNAL,
        ValueError("a bug"): Code.INTERNAL, KeyboardInterrupt(): Code.INTERNAL,
    }
    for exc, code in expected.items():
        assert code_of(exc) is code, type(exc).__name__

    class Subclassed(errors.PeerLost):
        pass

    assert code_of(Subclassed("b", "a")) is Code.LOST


def test_failures_cross_the_wire_and_back() -> None:
    for code in Code:
        msg = common_pb2.Failure.FromString(
            failure_to_proto("hospital_a", code, "why").SerializeToString())
        assert msg.code == code.value
        assert failure_from_proto(msg) == ("hospital_a", code, "why")
        assert isinstance(failure_from_proto(msg)[1], Code)


def test_an_unknown_code_from_the_wire_is_a_clear_value() -> None:
    party, code, message = failure_from_proto(
        common_pb2.Failure(party="hospital_b", code="FROM_THE_FUTURE", message="it broke"))
    assert (party, code) == ("hospital_b", Code.UNKNOWN) and not code.echo
    assert message == "it broke (failure code 'FROM_THE_FUTURE')"
    assert failure_from_proto(common_pb2.Failure(party="b"))[1:] == (Code.UNKNOWN,
                                                                     "no failure code")
    with pytest.raises(ValueError):
        failure_to_proto("a", "NOT_A_CODE", "m")  # type: ignore[arg-type]


def test_the_coordinator_reports_an_unknown_code_and_ignores_an_unknown_phase() -> None:
    from mpc.runner.coordinator import Coordinator, _Party

    seen: list[tuple[str, str, str]] = []
    coordinator = Coordinator(None, None, lambda *a: seen.append(a))  # type: ignore[arg-type]
    party = _Party("hospital_b", 1, "127.0.0.1:1", None, None)  # type: ignore[arg-type]
    events: queue.Queue = queue.Queue()
    events.put((party, Wire(phase=99, detail="a phase of a newer worker")))
    events.put((party, Wire(phase=Wire.COMPUTING)))
    events.put((party, Wire(phase=Wire.FAILED, failure=common_pb2.Failure(
        party="hospital_b", code="FROM_THE_FUTURE", message="it broke"))))
    deadline = time.monotonic() + 5
    coordinator._next(events, deadline)
    assert party.phase is Phase.PENDING and seen == []
    coordinator._next(events, deadline)
    assert party.phase is Phase.COMPUTING
    with pytest.raises(JobFailed) as failed:
        coordinator._next(events, deadline)
    assert failed.value.party == "hospital_b"
    assert "it broke (failure code 'FROM_THE_FUTURE')" in failed.value.cause
    assert party.phase is Phase.FAILED
