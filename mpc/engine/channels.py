"""The channels protocols use outside the secure arithmetic: to their peers and to the dealer.

Protocols never see the mesh or the dealer client, and never spell a message tag. A
`PeerChannel` numbers and tags messages itself, as MPyC's runtime does with its program
counter: a protocol names its step (`channel.step("ring")`), and each message to a peer
gets the tag `<namespace>/<step>#<n>`, n counting that peer's messages of that step in
that direction. The receiver expects the tag its own counter gives; a message carrying
another tag (a peer out of step, or of another version) is a ProtocolAbort naming the peer.
Both sides derive the same tags from the same program, so nothing but the tag and the
mesh's own sequence number travels to keep them in step.

`DealerChannel` is what protocols use of the dealer (linkage and overlap): the seed this
party shares with it, handing over a blinded list, fetching a part of the outcome.

The real implementations are `MeshChannel` (over transport.PeerMesh, or anything with the
same four methods: see `Mesh`) and `DealerLink` (over engine.DealerClient); mpc.testing has
in-process ones.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Protocol, TypeAlias

import torch

from mpc.errors import EngineError, ProtocolAbort

# What an object message may hold: transport.codec encodes exactly these, never pickle.
Plain: TypeAlias = (None | bool | int | float | str | torch.Size | list["Plain"]
                    | tuple["Plain", ...])
OutcomePart: TypeAlias = str  # a part a kind's dealer part names (mpc/kinds, DealerPart.parts)

_STEP = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+)*")
MAX_NAMESPACE = 48  # the mesh refuses tags over 64 characters; room for "#<counter>"


class Mesh(Protocol):
    """What the engine (communicator, session) and MeshChannel use of the job's transport:
    transport.PeerMesh, or mpc.testing's InProcessMesh. The receive methods raise
    ProtocolAbort naming the peer when the next message from it has another tag."""

    job_id: str
    rank: int
    parties: list[str]
    peers: list[int]

    def send_tensor(self, dst: int, tensor: torch.Tensor, tag: str) -> None: ...

    def recv_tensor(self, src: int, tag: str) -> torch.Tensor: ...

    def send_object(self, dst: int, obj: Any, tag: str) -> None: ...

    def recv_object(self, src: int, tag: str) -> Any: ...


class PeerChannel(Protocol):
    """Typed messages to this job's other parties, tagged by protocol step."""

    @property
    def job_id(self) -> str: ...

    @property
    def rank(self) -> int: ...

    @property
    def parties(self) -> list[str]: ...

    @property
    def peers(self) -> list[int]: ...

    @property
    def namespace(self) -> str: ...

    def step(self, name: str) -> PeerChannel:
        """The channel of a protocol step: tags `<namespace>/<name>#<n>`."""
        ...

    def send_tensor(self, peer: int, tensor: torch.Tensor) -> None: ...

    def recv_tensor(self, peer: int, *, dtype: torch.dtype | None = None,
                    shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """The peer's next tensor of this step; with `dtype`/`shape`, anything else is a
        ProtocolAbort naming the peer."""
        ...

    def send_object(self, peer: int, obj: Plain) -> None: ...

    def recv_object(self, peer: int) -> Plain: ...


class DealerChannel(Protocol):
    """What linkage and overlap use of the dealer, for this party of this job."""

    @property
    def seed(self) -> bytes:
        """The 256-bit seed this party shares with the dealer (row masks)."""
        ...

    def submit_points(self, list_name: str, points: bytes) -> None:
        """Hand the dealer a fully blinded list of 32-byte points."""
        ...

    def fetch_outcome(self, part: OutcomePart, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor:
        """This party's part of the matching's outcome (waits until every list is in)."""
        ...


class _Counters:
    """Per (peer, step) message counters of one channel tree, each direction apart."""

    def __init__(self) -> None:
        self._sent: dict[tuple[int, str], int] = {}
        self._received: dict[tuple[int, str], int] = {}
        self._lock = threading.Lock()

    def next_sent(self, peer: int, path: str) -> int:
        with self._lock:
            n = self._sent.get((peer, path), 0)
            self._sent[(peer, path)] = n + 1
            return n

    def next_received(self, peer: int, path: str) -> int:
        with self._lock:
            n = self._received.get((peer, path), 0)
            self._received[(peer, path)] = n + 1
            return n


class MeshChannel:
    """PeerChannel over a Mesh. The root channel (no namespace) only makes steps; every
    channel made from one root shares its counters, so a step named twice goes on counting."""

    def __init__(self, mesh: Mesh, namespace: str = "", *,
                 _counters: _Counters | None = None) -> None:
        if len(namespace) > MAX_NAMESPACE:
            raise EngineError(f"channel namespace {namespace!r} is too long")
        self._mesh = mesh
        self._namespace = namespace
        self._counters = _counters if _counters is not None else _Counters()

    @property
    def job_id(self) -> str:
        return self._mesh.job_id

    @property
    def rank(self) -> int:
        return self._mesh.rank

    @property
    def parties(self) -> list[str]:
        return list(self._mesh.parties)

    @property
    def peers(self) -> list[int]:
        return list(self._mesh.peers)

    @property
    def namespace(self) -> str:
        return self._namespace

    def step(self, name: str) -> MeshChannel:
        if not _STEP.fullmatch(name):
            raise EngineError(f"step names are lower-case words, not {name!r}")
        path = f"{self._namespace}/{name}" if self._namespace else name
        return MeshChannel(self._mesh, path, _counters=self._counters)

    def _next_tag(self, peer: int, sending: bool) -> str:
        if not self._namespace:
            raise EngineError("messages go on a named step: use channel.step(name)")
        if peer not in self._mesh.peers:
            raise ProtocolAbort(f"rank {self.rank} has no peer of rank {peer}")
        count = self._counters.next_sent if sending else self._counters.next_received
        return f"{self._namespace}#{count(peer, self._namespace)}"

    def send_tensor(self, peer: int, tensor: torch.Tensor) -> None:
        self._mesh.send_tensor(peer, tensor, self._next_tag(peer, sending=True))

    def recv_tensor(self, peer: int, *, dtype: torch.dtype | None = None,
                    shape: tuple[int, ...] | None = None) -> torch.Tensor:
        tag = self._next_tag(peer, sending=False)
        tensor = self._mesh.recv_tensor(peer, tag)
        if (dtype is not None and tensor.dtype != dtype) or \
                (shape is not None and tuple(tensor.shape) != tuple(shape)):
            want = f"{dtype or tensor.dtype}{tuple(shape) if shape is not None else ''}"
            raise ProtocolAbort(f"party {self._mesh.parties[peer]} sent "
                                f"{tensor.dtype}{tuple(tensor.shape)} at {tag}, expected {want}")
        return tensor

    def send_object(self, peer: int, obj: Plain) -> None:
        self._mesh.send_object(peer, obj, self._next_tag(peer, sending=True))

    def recv_object(self, peer: int) -> Plain:
        value: Plain = self._mesh.recv_object(peer, self._next_tag(peer, sending=False))
        return value


class DealerClientLike(Protocol):
    """The calls DealerLink makes of engine.DealerClient (rank-addressed)."""

    def submit_points(self, rank: int, list_name: str, points: bytes) -> None: ...

    def fetch_outcome(self, rank: int, part: str, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor: ...


class DealerLink:
    """DealerChannel over the party's DealerClient (or anything with its two calls)."""

    def __init__(self, client: DealerClientLike, rank: int, seed: bytes) -> None:
        if len(seed) != 32:
            raise EngineError("the dealer seed is 32 bytes")
        self._client = client
        self._rank = rank
        self._seed = seed

    @property
    def seed(self) -> bytes:
        return self._seed

    def submit_points(self, list_name: str, points: bytes) -> None:
        self._client.submit_points(self._rank, list_name, points)

    def fetch_outcome(self, part: OutcomePart, widths: tuple[int, ...] = (),
                      pad_to: int = 0) -> torch.Tensor:
        return self._client.fetch_outcome(self._rank, part, widths, pad_to)
