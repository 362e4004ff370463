"""Every gRPC endpoint under thousands of generated messages. For each message the test
works out, from the message alone and what was sent before, what the endpoint must answer:
the exact status and message of a refusal, or the reply's value. Afterwards, inside each
test, every process still runs and the federation still answers and runs a job correctly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mpc.config.party import TlsFiles, load_party_config, raised_by
from mpc.config.spec import parse_spec
from mpc.engine.correlations import Request
from mpc.engine.dealer_client import PROTO_TO_OP
from mpc.errors import PeerAbort, PeerLost, PolicyRefused, ProtocolAbort, TransportError
from mpc.proto import (
    dealer_pb2,
    dealer_pb2_grpc,
    peer_pb2,
    peer_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from mpc.synth import generate_treatments
from mpc.transport import codec
from mpc.transport.messages import tensor_from_chunks
from mpc.transport.peer_mesh import PeerMesh
from mpc.transport.tls import TlsIdentity, secure_channel
from mpc.transport.validate import (
    address_problem,
    head_problem,
    job_id_problem,
    name_problem,
    sha256_problem,
)
from mpc.worker.policy import approve
from tests.conftest import Harness, start_federation
from tests.helpers import plaintext_release, spec_text

PARTIES = ["hospital_a", "hospital_b", "hospital_c"]
ME = "hospital_a"  # the party certificate the dealer and peer attacks use
FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))
Event = worker_pb2.JobEvent
Frame = peer_pb2.PeerFrame
INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
PRECONDITION, DENIED = grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED

text = st.text(max_size=80)
job_ids = st.one_of(text, st.from_regex(r"[A-Za-z0-9_-]{8,64}", fullmatch=True))
names = st.one_of(st.sampled_from([*PARTIES, "dealer", "coordinator"]), text)
shapes = st.lists(st.integers(-5, 1 << 40), max_size=10)
addresses = st.one_of(text, st.from_regex(r"127\.0\.0\.1:[0-9]{1,6}", fullmatch=True))
# The dealer attacks also draw from a few job ids, party lists, ranks and small requests,
# so that joins, correlations and leaves meet the same jobs.
dealer_jobs = st.one_of(job_ids, st.sampled_from([f"fuzz-dealer-job-{i}" for i in range(4)]))
dealer_parties = st.one_of(st.lists(names, max_size=70), st.permutations(PARTIES),
                           st.just([ME, "hospital_b"]))
small = st.integers(0, 3)
dealer_shapes = st.one_of(shapes, st.lists(st.integers(0, 4), max_size=3))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("fuzz")
    files = generate_treatments(root / "data", PARTIES, patients_per_party=300, seed=41)
    fed = start_federation(root / "fed", files, ["product-use"])
    try:
        yield Harness(fed, files)
    finally:
        fed.stop()


def identity(harness: Harness, name: str) -> TlsIdentity:
    certs = harness.fed.certs
    return TlsIdentity.load(TlsFiles(certs / "ca.pem", certs / f"{name}.pem",
                                     certs / f"{name}.key"))


def refused(call: Callable[[], Any], code: grpc.StatusCode, details: str | set[str]) -> None:
    """The call (a stream is read to its end) ends with exactly this status and message
    (or one of these messages)."""
    with pytest.raises(grpc.RpcError) as err:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    assert err.value.code() == code, f"{err.value.code()}: {err.value.details()}"
    wanted = {details} if isinstance(details, str) else details
    assert err.value.details() in wanted, (err.value.details(), wanted)


def assert_federation_works(harness: Harness) -> None:
    """Every process is up, every worker and the dealer answer a control call as they
    should, and a job releases the plaintext reference table."""
    for name, proc in harness.fed.procs.items():
        assert proc.poll() is None, f"{name} died under fuzzing"
    coordinator = identity(harness, "coordinator")
    for party in PARTIES:
        with secure_channel(coordinator, harness.fed.addresses[party], party) as channel:
            stub = worker_pb2_grpc.WorkerStub(channel)
            refused(lambda s=stub: s.Start(worker_pb2.StartRequest(job_id="no-such-job"),
                                           timeout=10),
                    NOT_FOUND, "no job 'no-such-job' from coordinator")
    with secure_channel(identity(harness, ME), harness.fed.dealer_address, "dealer") as channel:
        reply = dealer_pb2_grpc.DealerStub(channel).Leave(
            dealer_pb2.LeaveRequest(job_id="no-such-job", rank=0), timeout=10)
        assert not reply.HasField("head")  # nothing to leave, nothing logged
    spec = spec_text("product-use", PARTIES, min_cell=5)
    outcome = harness.run(spec)
    keep, value, _ = plaintext_release(harness.files, parse_spec(spec), outcome.rules)
    assert outcome.table is not None
    np.testing.assert_array_equal(outcome.table.keep, keep)
    np.testing.assert_array_equal(outcome.table.value, value)


# ---- the worker ----------------------------------------------------------------------------

def start_problems(peers: dict[int, str], dealer: str, min_cell: int, min_contributors: int,
                   parties: int) -> set[str]:
    """The refusals a start order may get (the first bad address in the order the worker
    reads the peer map, which protobuf does not fix); empty for a good order."""
    if set(peers) != set(range(parties)):
        return {f"the order names ranks {sorted(peers)[:20]}, expected 0 to {parties - 1}"}
    bad = {p for p in map(address_problem, (*peers.values(), dealer)) if p}
    if bad:
        return bad
    if not (1 <= min_cell <= 10**9 and 1 <= min_contributors <= parties):
        return {f"disclosure rules out of range (min_cell {min_cell}, min_contributors "
                f"{min_contributors})"}
    return set()


def test_worker_endpoints(harness: Harness) -> None:
    config = load_party_config(harness.fed.party_config(ME))
    submitted: set[str] = set()  # well-formed job ids the worker has seen
    with secure_channel(identity(harness, "coordinator"), harness.fed.addresses[ME],
                        ME) as channel:
        stub = worker_pb2_grpc.WorkerStub(channel)

        @FUZZ
        @given(job_ids, st.binary(max_size=2000) | text.map(str.encode))
        def submit(job_id: str, spec: bytes) -> None:
            request = worker_pb2.SubmitRequest(job_id=job_id, spec_toml=spec)
            problem = job_id_problem(job_id)
            if problem:
                refused(lambda: stub.Submit(request, timeout=10), INVALID, problem)
                return
            if job_id in submitted:
                reason = f"{ME} refused the job: job id {job_id} was used before; a job id " \
                         "is used once"
            else:
                with pytest.raises(PolicyRefused) as policy:  # as the worker's own policy
                    approve(config, spec, "coordinator")
                reason = str(policy.value)
                assert reason.startswith(f"{ME} refused the job: the spec is invalid: "
                                         "submitted spec: "), reason
            submitted.add(job_id)
            events = list(stub.Submit(request, timeout=10))
            assert [(e.job_id, e.party, e.phase) for e in events] == [(job_id, ME, Event.FAILED)]
            failure = events[0].failure
            assert (failure.party, failure.code, failure.message) == (ME, "POLICY", reason)

        @FUZZ
        @given(job_ids, st.dictionaries(st.integers(0, 2**32 - 1), text, max_size=6), text,
               st.integers(-2**63, 2**63 - 1), st.integers(-2**63, 2**63 - 1))
        def start(job_id: str, peers: dict[int, str], dealer: str, min_cell: int,
                  min_contributors: int) -> None:
            # No job runs at this worker: every start order is for a job it does not have.
            refused(lambda: stub.Start(worker_pb2.StartRequest(
                job_id=job_id, peers=peers, dealer_address=dealer,
                disclosure=worker_pb2.Disclosure(min_cell=min_cell,
                                                 min_contributors=min_contributors)),
                timeout=10), NOT_FOUND, f"no job {job_id[:64]!r} from coordinator")

        @FUZZ
        @given(job_ids, st.text(max_size=5000))
        def abort(job_id: str, reason: str) -> None:
            request = worker_pb2.AbortRequest(job_id=job_id, reason=reason)
            problem = job_id_problem(job_id)
            if problem:
                refused(lambda: stub.Abort(request, timeout=10), INVALID, problem)
            else:  # a job it does not have (yet): acknowledged, and refused if it comes
                assert stub.Abort(request, timeout=10) == worker_pb2.AbortReply()

        submit()
        start()
        abort()
        # A spec larger than the worker's limit, under a fresh job id.
        big = b"#" * (config.limits.max_spec_bytes + 1)
        refused(lambda: stub.Submit(worker_pb2.SubmitRequest(job_id="fuzz-big-spec-01",
                                                             spec_toml=big), timeout=10),
                INVALID, f"the spec has {len(big)} bytes; {ME} takes at most "
                         f"{config.limits.max_spec_bytes} {raised_by('max_spec_bytes')}")
        start_orders_to_a_waiting_job(harness, stub)
    assert_federation_works(harness)


def start_orders_to_a_waiting_job(harness: Harness, stub: worker_pb2_grpc.WorkerStub) -> None:
    """Malformed start orders to a job that waits for its start order: each gets its exact
    refusal and the job keeps waiting; a coordinator that hangs up then ends it."""
    job_id = "fuzz-waiting-job-0001"
    spec = spec_text("product-use", PARTIES)
    stream = stub.Submit(worker_pb2.SubmitRequest(job_id=job_id, spec_toml=spec), timeout=600)
    phases = []
    for job_event in stream:
        phases.append(job_event.phase)
        if job_event.phase in (Event.READY, Event.FAILED):
            break
    assert phases == [Event.ACCEPTED, Event.LOCAL_TABLE, Event.READY]

    @settings(FUZZ, max_examples=300)
    @given(st.dictionaries(st.one_of(st.integers(0, 3), st.integers(0, 2**32 - 1)), addresses,
                           max_size=5),
           addresses, st.one_of(st.integers(-2, 12), st.integers(-2**63, 2**63 - 1)),
           st.one_of(st.integers(-2, 4), st.integers(-2**63, 2**63 - 1)))
    def start(peers: dict[int, str], dealer: str, min_cell: int, min_contributors: int) -> None:
        problems = start_problems(peers, dealer, min_cell, min_contributors, len(PARTIES))
        assume(problems)  # a good order would start the job against addresses nobody holds
        refused(lambda: stub.Start(worker_pb2.StartRequest(
            job_id=job_id, peers=peers, dealer_address=dealer,
            disclosure=worker_pb2.Disclosure(min_cell=min_cell,
                                             min_contributors=min_contributors)),
            timeout=10), INVALID, problems)

    start()  # every order was refused as malformed, none as unknown: the job still waits
    # The coordinator hangs up (the stream's own status is then ours, and nobody reads it):
    # the worker ends the job and takes it off its books.
    stream.cancel()
    deadline = time.monotonic() + 20
    while True:
        with pytest.raises(grpc.RpcError) as err:
            stub.Start(worker_pb2.StartRequest(job_id=job_id), timeout=10)
        if err.value.code() == NOT_FOUND:
            assert err.value.details() == f"no job {job_id!r} from coordinator"
            break
        # still on the books: the empty order is refused as malformed
        assert err.value.code() == INVALID, err.value.details()
        assert time.monotonic() < deadline, "the worker never ended the job"
        time.sleep(0.2)
    ends = [(e["event"], e.get("reason")) for e in harness.audit_events(ME, job_id)
            if e["event"] in ("job_aborted", "job_end")]
    assert ends == [("job_aborted", "the coordinator went away")]


# ---- the dealer ----------------------------------------------------------------------------

@dataclass
class DealerJob:
    parties: tuple[str, ...]
    spec: str
    joined: set[int] = field(default_factory=set)
    served: list[Request] = field(default_factory=list)
    corrections: list[bytes] = field(default_factory=list)  # what each request got


@dataclass
class DealerModel:
    """What the dealer holds after the calls made so far (this test's calls only: every
    other job of the federation ends with all its parties leaving, which erases it)."""

    jobs: dict[str, DealerJob] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    max_jobs: int = 256

    def join(self, job_id: str, spec: str, parties: tuple[str, ...], rank: int
             ) -> tuple[grpc.StatusCode, str] | None:
        """The refusal a join gets, or None; updates the model as the dealer does."""
        distinct = "a job needs 2 to 64 distinct parties"
        problem = job_id_problem(job_id)
        if problem is None and not 2 <= len(parties) <= 64:
            problem = distinct
        problem = problem or next(filter(None, map(name_problem, parties)), None)
        if problem is None and len(set(parties)) != len(parties):
            problem = distinct
        elif problem is None and (rank >= len(parties) or parties[rank] != ME):
            problem = f"{ME} is not rank {rank} of this job"
        problem = problem or sha256_problem(spec, "spec SHA-256")
        if problem:
            return INVALID, problem
        job = self.jobs.get(job_id)
        if job is None and job_id in self.seen:
            return PRECONDITION, (f"job {job_id} was served before: a job id is used once, so "
                                  "its seeds and correlations are never handed out again")
        if job is not None and rank in job.joined:
            return PRECONDITION, (f"{ME} (rank {rank}) joined job {job_id} already: each party "
                                  "joins a job once")
        if job is None and len(self.jobs) >= self.max_jobs:
            return grpc.StatusCode.RESOURCE_EXHAUSTED, \
                f"the dealer holds {len(self.jobs)} jobs, its limit {raised_by('max_jobs')}"
        if job is None:
            job = self.jobs[job_id] = DealerJob(parties, spec)
            self.seen.add(job_id)
        if job.parties != parties or job.spec != spec:
            return PRECONDITION, (f"{ME} joined job {job_id} with a different party list or "
                                  "spec than the other parties")
        job.joined.add(rank)
        return None


@st.composite
def well_formed_requests(draw: st.DrawFn) -> tuple[str, int, int, list[int], list[int], str]:
    """A correlation request the dealer serves, for a job of the pool, by number."""
    op = draw(st.sampled_from(sorted(PROTO_TO_OP)))
    name = PROTO_TO_OP[op]
    dims = st.lists(st.integers(0, 4), max_size=3)
    size0, size1, torch_op = draw(dims), [], ""
    if name == "additive_triple":
        torch_op = draw(st.sampled_from(["mul", "matmul"]))
        if torch_op == "matmul":
            m, k, n = draw(st.tuples(small, small, small))
            size0, size1 = [m, k], [k, n]
        else:
            size1 = draw(st.sampled_from([size0, [], [1]]))
    elif name == "binary_triple":
        size1 = draw(st.sampled_from([size0, []]))
    job = draw(st.sampled_from([f"fuzz-dealer-job-{i}" for i in range(4)]))
    return job, draw(small), op, size0, size1, torch_op


def test_dealer_endpoints(harness: Harness) -> None:
    model = DealerModel()
    seeds: set[bytes] = set()
    heads: list[int] = []
    with secure_channel(identity(harness, ME), harness.fed.dealer_address,
                        "dealer") as channel:
        stub = dealer_pb2_grpc.DealerStub(channel)

        @FUZZ
        @given(dealer_jobs, st.one_of(text, st.sampled_from(["ab" * 32, "cd" * 32]),
                                      st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
               dealer_parties, st.one_of(small, st.integers(0, 2**32 - 1)))
        def join(job_id: str, spec: str, parties: list[str], rank: int) -> None:
            request = dealer_pb2.JoinRequest(job_id=job_id, spec_sha256=spec, parties=parties,
                                             rank=rank)
            expected = model.join(job_id, spec, tuple(parties), rank)
            if expected is not None:
                refused(lambda: stub.Join(request, timeout=10), *expected)
                return
            seed = stub.Join(request, timeout=10).seed
            assert len(seed) == 32 and seed not in seeds  # a fresh seed for every job
            seeds.add(seed)

        @FUZZ
        @given(st.one_of(st.tuples(dealer_jobs, st.one_of(small, st.integers(0, 2**64 - 1)),
                                   st.integers(0, 8), dealer_shapes, dealer_shapes,
                                   st.one_of(text, st.sampled_from(["mul", "matmul", ""]))),
                         well_formed_requests()))
        def correlation(drawn: tuple[str, int, int, list[int], list[int], str]) -> None:
            job_id, seq, op, size0, size1, torch_op = drawn
            request = dealer_pb2.CorrelationRequest(job_id=job_id, seq=seq, op=op, size0=size0,
                                                    size1=size1, torch_op=torch_op)
            call = lambda: stub.Correlation(request, timeout=120)  # noqa: E731
            job = model.jobs.get(job_id)
            if job is None:
                refused(call, NOT_FOUND, f"unknown job {job_id!r}")
                return
            if job.parties[0] != ME:
                refused(call, DENIED, "only the job's first party receives corrections")
                return
            if op not in PROTO_TO_OP:
                refused(call, INVALID, f"operation {op} is not served")
                return
            req = Request(seq=seq, op=PROTO_TO_OP[op], size0=tuple(size0), size1=tuple(size1),
                          torch_op=torch_op)
            try:
                req.validate()
            except ValueError as exc:
                refused(call, INVALID, str(exc))
                return
            served = len(job.served)
            if seq > served:
                refused(call, PRECONDITION, f"request {seq} skips ahead of {served}")
                return
            if seq < served and job.served[seq] != req:
                refused(call, PRECONDITION, f"request {seq} differs from the one already served")
                return
            tensor = tensor_from_chunks(list(call()), "dealer")
            assert tensor.dtype == torch.int64 and tuple(tensor.shape) == req.output_size()
            data = tensor.numpy().tobytes()
            if seq == served:
                job.served.append(req)
                job.corrections.append(data)
            else:  # a retry gets the very same correction
                assert data == job.corrections[seq]

        @FUZZ
        @given(dealer_jobs, st.one_of(small, st.integers(0, 2**32 - 1)),
               st.integers(0, 2**64 - 1))
        def leave(job_id: str, rank: int, requests: int) -> None:
            request = dealer_pb2.LeaveRequest(job_id=job_id, rank=rank, requests=requests)
            job = model.jobs.get(job_id)
            if job is not None and (rank >= len(job.parties) or job.parties[rank] != ME):
                refused(lambda: stub.Leave(request, timeout=10), DENIED,
                        f"{ME} is not rank {rank} of this job")
                return
            reply = stub.Leave(request, timeout=10)
            if job is None:
                assert reply == dealer_pb2.LeaveReply()  # nothing to leave
                return
            # The dealer logged the leave and hands over its log head, to be pinned. The
            # job's other parties never leave, so it stays on the books.
            head = reply.head
            assert head.member == "dealer"
            assert head_problem(head.member, head.seq, head.hash, head.sig) is None
            assert not heads or head.seq > heads[-1]
            heads.append(head.seq)

        join()
        correlation()
        leave()
    # The fuzzing reached past the first checks, and left room for real jobs.
    assert 0 < len(model.jobs) < model.max_jobs
    assert any(job.served for job in model.jobs.values()) and heads
    assert_federation_works(harness)


# ---- a job's peer endpoint -----------------------------------------------------------------

JOB = "fuzz-job-0001"
DTYPES = {"int64": np.int64, "uint8": np.uint8, "float32": np.float32}


@st.composite
def tensor_frames(draw: st.DrawFn) -> Frame:
    """A well-formed one-chunk tensor message (its number and tag still drawn)."""
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    count = int(np.prod(shape)) if shape else 1
    data = draw(st.binary(min_size=count * np.dtype(DTYPES[dtype]).itemsize,
                          max_size=count * np.dtype(DTYPES[dtype]).itemsize))
    return Frame(kind=Frame.TENSOR, seq=draw(st.integers(0, 1)), chunk=0, chunks=1,
                 dtype=dtype, shape=shape, data=data, nonce=draw(st.binary(min_size=32,
                                                                           max_size=32)),
                 tag=draw(st.sampled_from(["send", "all_reduce"])))


frames = st.one_of(st.builds(
    Frame, kind=st.integers(0, 6), job_id=st.one_of(job_ids, st.just(JOB)),
    sender=st.integers(0, 4), seq=st.integers(0, 3), chunk=st.integers(0, 3),
    chunks=st.one_of(st.integers(0, 3), st.integers(0, 1 << 31)),
    dtype=st.sampled_from(["int64", "uint8", "float32", "object", ""]),
    shape=st.lists(st.integers(-3, 1 << 20), max_size=9), data=st.binary(max_size=600),
    nonce=st.one_of(st.binary(max_size=40), st.binary(min_size=32, max_size=32)),
    tag=st.sampled_from(["send", "all_reduce", "x" * 70])), tensor_frames())


@dataclass(frozen=True)
class Outcome:
    """What the receiver's first recv_tensor(0, "send") gives: a tensor equal to `value`,
    or an exception of exactly class `error` whose message starts with `message`."""

    value: torch.Tensor | None = None
    error: type[Exception] | None = None
    message: str = ""


def receiver_sees(body: list[Frame]) -> Outcome:
    """The contract of a receiving peer, written out: frames after a good HELLO are read in
    order; the first complete message, or the first fault, is what a receive gets; a
    stream that ends before either is a lost peer."""
    me, them = "hospital_b", f"party {ME}"
    expected_seq, current = 0, None
    for frame in body:
        if frame.kind == Frame.HELLO:  # the stream's HELLO was the first frame: no other
            return Outcome(error=ProtocolAbort, message=f"{them} sent a second HELLO")
        if frame.kind == Frame.ABORT:
            return Outcome(error=PeerAbort, message=f"{ME} aborted the job: no reason given")
        if frame.kind == Frame.CLOSE:
            return Outcome(error=TransportError, message=f"{them} closed the channel")
        if frame.kind not in (Frame.TENSOR, Frame.OBJECT):
            return Outcome(error=ProtocolAbort,
                           message=f"{them} sent an unexpected frame kind {frame.kind}")
        if current is None:
            if frame.seq != expected_seq or frame.chunk != 0 or frame.chunks == 0:
                return Outcome(error=ProtocolAbort,
                               message=f"{them} sent message {frame.seq} chunk {frame.chunk}; "
                                       f"expected message {expected_seq} chunk 0")
            if frame.chunks * codec.CHUNK_BYTES > 256 * 1024 * 1024 + codec.CHUNK_BYTES:
                return Outcome(error=ProtocolAbort,
                               message=f"{them} announced a message of {frame.chunks} chunks")
            if len(frame.nonce) != 32 or len(frame.tag) > 64 or len(frame.shape) > 8:
                return Outcome(error=ProtocolAbort, message=f"{them} sent a malformed message "
                                                            "header")
            current = (frame, [frame.data])
        elif frame.seq != current[0].seq or frame.chunk != len(current[1]):
            return Outcome(error=ProtocolAbort,
                           message=f"{them} sent chunks out of order (message {frame.seq})")
        else:
            current[1].append(frame.data)
        head, parts = current
        if len(parts) < head.chunks:
            continue
        return complete(head, b"".join(parts), them)
    return Outcome(error=PeerLost, message=f"{me} lost the connection to {ME} (channel ended)")


def complete(head: Frame, data: bytes, them: str) -> Outcome:
    """A whole message: what it decodes to, and whether it is the one being received."""
    shape = tuple(head.shape)
    if head.kind == Frame.OBJECT:
        try:
            codec.decode_object(data)
        except ProtocolAbort:
            return Outcome(error=ProtocolAbort,
                           message=f"{them} sent an object that does not decode: ")
    elif head.dtype not in codec.DTYPES:
        return Outcome(error=ProtocolAbort,
                       message=f"{them} sent a tensor of unknown dtype {head.dtype!r}")
    elif any(d < 0 for d in shape):
        return Outcome(error=ProtocolAbort,
                       message=f"{them} sent a tensor with a negative dimension")
    elif int(np.prod(shape, dtype=object)) * np.dtype(DTYPES[head.dtype]).itemsize \
            != len(data):
        return Outcome(error=ProtocolAbort, message=f"{them} sent {len(data)} bytes for a "
                                                    f"{head.dtype} tensor of shape {shape}")
    if head.kind != Frame.TENSOR or head.tag != "send":
        return Outcome(error=ProtocolAbort,
                       message=f"out of step with {them}: expected send, got {head.tag} "
                               f"(message {head.seq})")
    array = np.frombuffer(data, dtype=DTYPES[head.dtype]).reshape(shape)
    return Outcome(value=torch.from_numpy(array.copy()))


def hello(sender: TlsIdentity) -> Frame:
    return Frame(kind=Frame.HELLO, job_id=JOB, sender=0, cert_sha256=sender.fingerprint)


def hello_problem(first: Frame, sender: TlsIdentity) -> str | None:
    """Why the receiver (rank 1) refuses a stream that starts with `first`, if it does."""
    if first.kind != Frame.HELLO:
        return "the first frame must be HELLO"
    if first.job_id != JOB:
        return f"unknown job {first.job_id!r}"
    if first.sender != 0:
        return f"rank {first.sender} may not dial rank 1"
    if first.cert_sha256 != sender.fingerprint:
        return "the HELLO names another certificate than the one presented"
    return None


def exchange(sender: TlsIdentity, address: str, stream: list[Frame]) -> list[Frame]:
    """Send `stream` to the receiver at `address`; what it answers, the call once ended."""
    with secure_channel(sender, address, "hospital_b") as channel:
        return list(peer_pb2_grpc.PeerExchangeStub(channel).Exchange(iter(stream), timeout=30))


def test_peer_endpoint(harness: Harness) -> None:
    """A job's peer endpoint (rank 1) under random streams from a valid party certificate:
    a bad HELLO is refused and leaves the endpoint open to the real peer; after a good one,
    the stream is acknowledged and the first receive gets exactly the message sent or the
    fault the frames make."""
    sender = identity(harness, ME)
    receiver_identity = identity(harness, "hospital_b")

    @settings(FUZZ, max_examples=200)
    @given(st.booleans(), st.lists(frames, max_size=6))
    def stream(valid_hello: bool, body: list[Frame]) -> None:
        receiver = PeerMesh(JOB, 1, PARTIES[:2], receiver_identity, recv_timeout_s=20)
        address = receiver.listen()
        try:
            first = hello(sender) if valid_hello else (body[0] if body else Frame())
            problem = hello_problem(first, sender)
            if problem is not None:
                refused(lambda: exchange(sender, address, [first, *body]), DENIED, problem)
                # the real peer can still connect and be heard
                good = tensor_message(torch.arange(6).reshape(2, 3))
                accepted_stream(receiver, receiver_identity, sender, address,
                                [hello(sender), good],
                                Outcome(value=torch.arange(6).reshape(2, 3)))
            else:
                accepted_stream(receiver, receiver_identity, sender, address, [first, *body],
                                receiver_sees(body))
        finally:
            receiver.close(grace_s=0)

    stream()
    assert_federation_works(harness)


def tensor_message(tensor: torch.Tensor) -> Frame:
    dtype, shape, data = codec.tensor_bytes(tensor)
    return Frame(kind=Frame.TENSOR, seq=0, chunk=0, chunks=1, dtype=dtype, shape=shape,
                 data=data, nonce=b"n" * 32, tag="send")


def accepted_stream(receiver: PeerMesh, receiver_identity: TlsIdentity, sender: TlsIdentity,
                    address: str, stream: list[Frame], outcome: Outcome) -> None:
    """Send `stream`, which the receiver accepts: its acknowledgement comes back, and its
    first receive gives `outcome`."""
    with secure_channel(sender, address, "hospital_b") as channel:
        call = peer_pb2_grpc.PeerExchangeStub(channel).Exchange(iter(stream), timeout=30)
        ack = next(call)
        assert (ack.kind, ack.job_id, ack.sender, ack.cert_sha256) == \
            (Frame.HELLO, JOB, 1, receiver_identity.fingerprint)
        if outcome.error is None:
            got = receiver.recv_tensor(0, "send")
            assert outcome.value is not None
            assert got.dtype == outcome.value.dtype and got.shape == outcome.value.shape
            assert got.numpy().tobytes() == outcome.value.numpy().tobytes()
        else:
            with pytest.raises(Exception) as err:  # noqa: B017 (the class is checked next)
                receiver.recv_tensor(0, "send")
            assert type(err.value) is outcome.error, repr(err.value)
            assert str(err.value).startswith(outcome.message), (str(err.value), outcome)
        # Once it accepted a stream, the receiver never ends it itself: only its own
        # close() does (and then whether the caller sees OK or a torn connection is a
        # race between the two ends' sockets). So the caller hangs up first, and
        # CANCELLED, its own doing, is the one status the call can end with; any other
        # (say UNKNOWN, an exception in the servicer) fails here.
        call.cancel()
        with pytest.raises(grpc.RpcError) as ended:
            next(call)
        assert ended.value.code() == grpc.StatusCode.CANCELLED, ended.value.details()
