"""Per-job set-up and tear-down of CrypTen over the project's mesh, dealer and randomness.

A session runs on one thread, and everything CrypTen would keep process-global (its
communicator, generators and tuple provider) is that thread's (crypten_compat, 5.): a job
process runs one session on its main thread; mpc.testing.inprocess runs one per party as
threads of one process. On the way out the session checks that torch's default generator
was never drawn from: anything in CrypTen that bypassed our streams fails the job.
"""

from __future__ import annotations

from types import TracebackType

import torch

from mpc.engine import crypten_compat
from mpc.engine.channels import Mesh
from mpc.engine.communicator import GrpcCommunicator
from mpc.engine.provider import DealerProvider, Fetch
from mpc.engine.rng import KeyStream, SequentialStream, derive_key, new_seed
from mpc.engine.secret import MpcContext
from mpc.errors import EngineError


class EngineSession:
    def __init__(self, mesh: Mesh, dealer_stream: KeyStream, fetch: Fetch | None,
                 *, allow_builtin_providers: bool = False) -> None:
        self.mesh = mesh
        self.job_id = mesh.job_id
        self.dealer_stream = dealer_stream
        self.fetch = fetch
        self.allow_builtin_providers = allow_builtin_providers
        self._provider = DealerProvider()
        self._rng_state: torch.Tensor | None = None
        self._active = False

    @property
    def provider(self) -> DealerProvider:
        """This session's tuple provider; its ledger stays readable after the session."""
        return self._provider

    def __enter__(self) -> MpcContext:
        crypten = crypten_compat.load_crypten()
        if GrpcCommunicator.is_initialized() or crypten_compat.current() is not None:
            raise EngineError("a CrypTen session is already running on this thread")
        crypten_compat.install(GrpcCommunicator)
        self._provider.bind(self.mesh.rank, self.dealer_stream, self.fetch)
        crypten_compat.bind(crypten_compat.Binding(
            self._provider, self._setup_prng,
            allow_builtin_providers=self.allow_builtin_providers))
        GrpcCommunicator.prepare(self.mesh)
        self._rng_state = torch.default_generator.get_state()
        self._active = True
        try:
            crypten.init()
        except BaseException:
            self._teardown()
            raise
        return MpcContext(self.mesh.rank, self.mesh.parties, self.job_id)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._teardown()
        if exc_type is None and self._rng_state is not None and \
                not torch.equal(self._rng_state, torch.default_generator.get_state()):
            raise EngineError(
                "torch's default generator (Mersenne Twister) was drawn from during the job: "
                "some randomness did not come from the cryptographic streams"
            )

    def _teardown(self) -> None:
        if not self._active:
            return
        self._active = False
        crypten = crypten_compat.load_crypten()
        if GrpcCommunicator.is_initialized():
            crypten.uninit()
        GrpcCommunicator.prepare(None)
        self._provider.unbind()
        crypten_compat.unbind()  # the thread's streams go with its binding

    def _setup_prng(self) -> None:
        """Replaces crypten._setup_prng: 256-bit seeds over the TLS peer channels.

        prev/next: each party sends a fresh seed to the next rank, so neighbouring
        parties share one stream (CrypTen's pseudo-random zero sharing); global: a
        seed from rank 0 to all; local: a seed this party keeps.
        """
        mesh, n, rank = self.mesh, len(self.mesh.parties), self.mesh.rank
        nxt, prv = (rank + 1) % n, (rank - 1) % n
        next_seed = new_seed()
        mesh.send_tensor(nxt, _seed_tensor(next_seed), "seed/pair")
        prev_seed = _seed_bytes(mesh.recv_tensor(prv, "seed/pair"), mesh.parties[prv])
        if rank == 0:
            global_seed = new_seed()
            for r in range(1, n):
                mesh.send_tensor(r, _seed_tensor(global_seed), "seed/global")
        else:
            global_seed = _seed_bytes(mesh.recv_tensor(0, "seed/global"), mesh.parties[0])
        job = self.job_id
        streams = {
            "prev": SequentialStream(derive_key(prev_seed, "przs", job, f"{prv}->{rank}"),
                                     "prev"),
            "next": SequentialStream(derive_key(next_seed, "przs", job, f"{rank}->{nxt}"),
                                     "next"),
            "local": SequentialStream(derive_key(new_seed(), "local", job), "local"),
            "global": SequentialStream(derive_key(global_seed, "global", job), "global"),
        }
        binding = crypten_compat.current()
        if binding is None:
            raise EngineError("the PRNG set-up ran outside its session's thread")
        binding.streams.update(streams)  # what crypten.generators shows this thread


def _seed_tensor(seed: bytes) -> torch.Tensor:
    return torch.tensor(list(seed), dtype=torch.uint8)


def _seed_bytes(tensor: torch.Tensor, sender: str) -> bytes:
    if tensor.dtype != torch.uint8 or tensor.shape != (32,):
        raise EngineError(f"party {sender} sent a malformed seed")
    return bytes(tensor.tolist())
