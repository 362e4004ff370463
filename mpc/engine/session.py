"""Per-job set-up and tear-down of CrypTen over the project's mesh, dealer and randomness.

A job process runs one session at a time (CrypTen's state is process-global).
On the way out the session checks that torch's default generator was never
drawn from: anything in CrypTen that bypassed our streams fails the job.
"""

from __future__ import annotations

from types import TracebackType

import torch

from mpc.engine import crypten_compat
from mpc.engine.communicator import GrpcCommunicator
from mpc.engine.provider import DealerProvider, Fetch
from mpc.engine.rng import KeyStream, SequentialStream, derive_key, new_seed
from mpc.engine.secret import MpcContext
from mpc.errors import EngineError
from mpc.transport.peer_mesh import PeerMesh

_PROVIDER = DealerProvider()
_CPU = torch.device("cpu")


class EngineSession:
    def __init__(self, mesh: PeerMesh, dealer_stream: KeyStream, fetch: Fetch | None,
                 *, allow_builtin_providers: bool = False) -> None:
        self.mesh = mesh
        self.job_id = mesh.job_id
        self.dealer_stream = dealer_stream
        self.fetch = fetch
        self.allow_builtin_providers = allow_builtin_providers
        self._rng_state: torch.Tensor | None = None
        self._active = False

    @property
    def provider(self) -> DealerProvider:
        return _PROVIDER


    def __enter__(self) -> MpcContext:
        crypten = crypten_compat.load_crypten()
        if GrpcCommunicator.is_initialized():
            raise EngineError("a CrypTen session is already running in this process")
        crypten_compat.install(GrpcCommunicator, _PROVIDER, self._setup_prng,
                               allow_builtin_providers=self.allow_builtin_providers)
        GrpcCommunicator.pending_mesh = self.mesh
        _PROVIDER.bind(self.mesh.rank, self.dealer_stream, self.fetch)
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
        GrpcCommunicator.pending_mesh = None
        _PROVIDER.unbind()
        crypten_compat.StreamSource.local = None
        for streams in crypten.generators.values():
            streams.clear()

    def _setup_prng(self) -> None:
        """Replaces crypten._setup_prng: 256-bit seeds over the TLS peer channels.

        prev/next: each party sends a fresh seed to the next rank, so neighbouring
        parties share one stream (CrypTen's pseudo-random zero sharing); global: a
        seed from rank 0 to all; local: a seed this party keeps.
        """
        crypten = crypten_compat.load_crypten()
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
        for key, stream in streams.items():
            crypten.generators[key].clear()
            crypten.generators[key][_CPU] = stream
        crypten_compat.StreamSource.local = streams["local"]


def _seed_tensor(seed: bytes) -> torch.Tensor:
    return torch.tensor(list(seed), dtype=torch.uint8)


def _seed_bytes(tensor: torch.Tensor, sender: str) -> bytes:
    if tensor.dtype != torch.uint8 or tensor.shape != (32,):
        raise EngineError(f"party {sender} sent a malformed seed")
    return bytes(tensor.tolist())
