"""Run any CrypTen program as N local parties over the project's transport and dealer.

    from mpc.testing import run_local_parties

    def program(ctx):                       # runs in each party's own process
        import crypten
        x = crypten.cryptensor(torch.tensor([1.0, 2.0]), src=0)
        return (x * x).get_plain_text()

    results = run_local_parties(program, world_size=3)   # one result per rank

Each party is a fresh process (spawn) with its own PeerMesh (gRPC, mutual TLS,
certificates from a throw-away development CA) and a dealer-backed tuple
provider; the dealer is a real gRPC server in the calling process. Inside
`program`, plain CrypTen calls (crypten.cryptensor, MPCTensor arithmetic and in-place
updates, comparisons, convolutions, dropout, get_plain_text) run unchanged; `ctx` is the
project's MpcContext. What is refused by design is listed in README.md (For contributors).
`program` must be importable (a module-level function), as must its return value.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import tempfile
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mpc.config.party import TlsFiles
from mpc.transport.pki import make_dev_pki

DEALER = "dealer"


def _party_main(rank: int, parties: list[str], pki: str, job_id: str, dealer_address: str,
                program: Callable[..., Any], args: tuple[Any, ...], allow_builtin: bool,
                with_io: bool, count_rounds: bool, inbox: Any, outbox: Any) -> None:
    try:
        from mpc.engine.channels import DealerLink, MeshChannel
        from mpc.engine.correlations import party_stream
        from mpc.engine.dealer_client import DealerClient
        from mpc.engine.rounds import CountingMesh
        from mpc.engine.session import EngineSession
        from mpc.protocols.blind import BlindingPool
        from mpc.transport.peer_mesh import PeerMesh
        from mpc.transport.tls import TlsIdentity

        name = parties[rank]
        folder = Path(pki)
        identity = TlsIdentity.load(TlsFiles(folder / "ca.pem", folder / f"{name}.pem",
                                             folder / f"{name}.key"), expected_name=name)
        mesh = PeerMesh(job_id, rank, parties, identity, "127.0.0.1", recv_timeout_s=120)
        outbox.put(("endpoint", rank, mesh.listen()))
        endpoints = inbox.get(timeout=120)
        mesh.connect(endpoints)
        dealer = DealerClient(identity, dealer_address, DEALER, job_id)
        seed = dealer.join("0" * 64, parties, rank)
        fetch = dealer.correlation if rank == 0 else None
        counting = CountingMesh(mesh) if count_rounds else None
        used: Any = counting or mesh
        if counting is not None and fetch is not None:
            fetch = counting.counting_dealer(fetch)
        pool = BlindingPool()
        try:
            with EngineSession(used, party_stream(seed, job_id, rank), fetch,
                               allow_builtin_providers=allow_builtin) as ctx:
                if with_io:  # protocols that also use the peer and dealer channels
                    from mpc.protocols.linkage import LinkIO

                    io = LinkIO(MeshChannel(used), DealerLink(dealer, rank, seed), pool)
                    result = program(ctx, io, *args)
                else:
                    result = program(ctx, *args)
            if counting is not None:
                outbox.put(("rounds", rank, counting.count.as_dict()))
            # Plain pickle copies tensors by value; the queue's own pickler would pass a
            # shared-memory handle that dies with this process.
            outbox.put(("result", rank, pickle.dumps(result)))
        finally:
            pool.close()
            mesh.close()
            dealer.close()
    except BaseException as exc:  # report, never hang the caller
        outbox.put(("error", rank, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    # Leave at once once the report is flushed: gRPC's threads do not survive a normal
    # interpreter shutdown gracefully (the blinding pool was closed above).
    outbox.close()
    outbox.join_thread()
    os._exit(0)


class LocalPartiesError(RuntimeError):
    pass


def run_local_parties(program: Callable[..., Any], world_size: int = 3, *,
                      args: tuple[Any, ...] = (), timeout_s: float = 300.0,
                      allow_builtin_providers: bool = False, with_io: bool = False,
                      dealer: Any = None, rtt_ms: float = 0.0,
                      rounds: list[dict[str, Any]] | None = None) -> list[Any]:
    """Run `program(ctx, *args)` in `world_size` party processes; return results by rank.
    `with_io=True` calls `program(ctx, io, *args)` with the party's LinkIO (peer and dealer
    channels, a blinding pool); `dealer` replaces the in-process DealerService (to observe
    it). `rtt_ms` puts a latency relay (relay.py) on every peer link and on the dealer link;
    `rounds`, a list, receives each rank's communication rounds (engine/rounds.py). For a
    fast test of the same program without processes or TLS, see
    mpc.testing.inprocess.run_in_threads."""
    from mpc.dealer.service import DealerService, start_dealer
    from mpc.testing.relay import LatencyRelay
    from mpc.transport.tls import TlsIdentity

    parties = [f"party{r}" for r in range(world_size)]
    with tempfile.TemporaryDirectory(prefix="mpc-local-") as tmp:
        make_dev_pki(Path(tmp), parties, dealer=DEALER)
        dealer_identity = TlsIdentity.load(TlsFiles(Path(tmp) / "ca.pem",
                                                    Path(tmp) / f"{DEALER}.pem",
                                                    Path(tmp) / f"{DEALER}.key"))
        server, port = start_dealer(dealer_identity, "127.0.0.1:0",
                                    dealer or DealerService(DEALER))
        relays: list[LatencyRelay] = []

        def delayed(address: str) -> str:
            if rtt_ms <= 0:
                return address
            relays.append(LatencyRelay(address, rtt_ms / 2000))
            return relays[-1].address

        ctx = mp.get_context("spawn")
        outbox = ctx.Queue()
        inboxes = [ctx.Queue() for _ in parties]
        job_id = uuid.uuid4().hex
        procs = [ctx.Process(target=_party_main,  # not daemons: parties may start pools
                             args=(r, parties, tmp, job_id, delayed(f"127.0.0.1:{port}"),
                                   program, args, allow_builtin_providers, with_io,
                                   rounds is not None, inboxes[r], outbox))
                 for r in range(world_size)]
        for p in procs:
            p.start()
        try:
            results, counts = _collect(procs, inboxes, outbox, world_size, timeout_s, delayed)
            if rounds is not None:
                rounds[:] = [counts[r] for r in range(world_size)]
            return results
        finally:
            for p in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()
            for relay in relays:
                relay.close()
            server.stop(grace=None)


def _collect(procs: list[Any], inboxes: list[Any], outbox: Any, world_size: int,
             timeout_s: float, delayed: Callable[[str], str]
             ) -> tuple[list[Any], dict[int, dict[str, Any]]]:
    endpoints: dict[int, str] = {}
    counts: dict[int, dict[str, Any]] = {}
    results: dict[int, Any] = {}
    errors: dict[int, str] = {}
    while len(results) + len(errors) < world_size:
        try:
            kind, rank, value = outbox.get(timeout=timeout_s)
        except queue.Empty:
            raise LocalPartiesError(f"parties did not finish within {timeout_s} s") from None
        if kind == "endpoint":
            endpoints[rank] = delayed(value)
            if len(endpoints) == world_size:
                for inbox in inboxes:
                    inbox.put(endpoints)
        elif kind == "rounds":
            counts[rank] = value
        elif kind == "result":
            results[rank] = pickle.loads(value)
        else:
            errors[rank] = value
            if len(endpoints) < world_size:  # the others wait for endpoints: stop them
                for p in procs:
                    p.kill()
                break
    if errors:
        first = min(errors)
        raise LocalPartiesError(f"party{first} failed: {errors[first]}")
    return [results[r] for r in range(world_size)], counts
