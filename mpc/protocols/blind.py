"""Commutative blinding in ristretto255, the pseudonym step of the linkage protocol.

Each party hashes its ids to the group (a random-oracle hash with the job id in its input,
so pseudonyms never carry over between jobs) and multiplies by a secret scalar. Scalar
multiplication commutes, so k_B * (k_A * H(id)) == k_A * (k_B * H(id)) and the dealer can match
doubly blinded lists without learning any id. ristretto255 is a prime-order group: no cofactor
to clear and no small-subgroup points to reject beyond what libsodium's decoder refuses.

libsodium is reached through ctypes (no binding package). Large inputs can be split across a
`BlindingPool` of *spawned* worker processes (the caller may run gRPC, which does not survive
fork). The pool is an object with a lifetime: whoever runs the job creates it, hands it to
the protocols (linkage.LinkIO) and closes it (`with BlindingPool() as pool:`); without a pool,
blinding runs inline. The workers import only this module, so it must stay free of heavy
imports at module level (the shuffles' generator is mpc.engine.rng's).

Keys are plain ``bytes``: Python cannot reliably wipe an immutable object (or the copies the
interpreter and pickling make of it), so no erase function is offered; callers keep keys in
job-scoped objects only and drop every reference when the job ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from functools import cache
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiprocessing.pool import Pool

POINT_BYTES = 32
SCALAR_BYTES = 32
HASH_DOMAIN = b"mpc-health/v1/link\x00"
# Below this many points the spawn and transfer cost outweighs a second core.
PARALLEL_MIN = 20_000
# Order of the ristretto255 group; keys must be canonical nonzero scalars below it.
_GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493


@cache
def _sodium() -> ctypes.CDLL:
    """Load libsodium once per process (each spawned worker loads its own)."""
    lib = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
    if lib.sodium_init() < 0:
        raise RuntimeError("libsodium failed to initialise")
    lib.crypto_core_ristretto255_scalar_random.restype = None
    lib.crypto_core_ristretto255_random.restype = None
    return lib


def new_key() -> bytes:
    """A fresh uniformly random nonzero scalar from libsodium's CSPRNG, for one job and partner."""
    buf = ctypes.create_string_buffer(SCALAR_BYTES)
    lib = _sodium()
    while True:
        lib.crypto_core_ristretto255_scalar_random(buf)
        key = buf.raw
        if any(key):  # libsodium already rejects zero; cheap to make sure
            return key


def _check_key(key: bytes) -> None:
    if len(key) != SCALAR_BYTES:
        raise ValueError(f"a blinding key is {SCALAR_BYTES} bytes, got {len(key)}")
    # libsodium silently drops the top bit of the scalar; refuse anything non-canonical
    # rather than blind under a key other than the one given.
    if not 0 < int.from_bytes(key, "little") < _GROUP_ORDER:
        raise ValueError("a blinding key must be a nonzero scalar below the group order")


def _hash_points(job_id: str, ids: Sequence[str]) -> bytes:
    lib = _sodium()
    from_hash = lib.crypto_core_ristretto255_from_hash
    out = ctypes.create_string_buffer(POINT_BYTES)
    prefix = hashlib.sha512(HASH_DOMAIN + job_id.encode() + b"\x00")
    parts = []
    for ident in ids:
        h = prefix.copy()
        h.update(ident.encode())
        from_hash(out, h.digest())
        parts.append(out.raw)
    return b"".join(parts)


def _blind_inline(points: bytes, key: bytes, base: int = 0) -> bytes:
    """k*P for each point; `base` is the chunk's first global position, for error messages."""
    lib = _sodium()
    mult = lib.crypto_scalarmult_ristretto255
    out = ctypes.create_string_buffer(POINT_BYTES)
    view = memoryview(points)
    parts = []
    for i, off in enumerate(range(0, len(points), POINT_BYTES)):
        point = bytes(view[off: off + POINT_BYTES])
        if mult(out, key, point) != 0:
            valid = lib.crypto_core_ristretto255_is_valid_point(point) == 1
            why = "blinds to the identity" if valid else "is not a valid ristretto255 encoding"
            raise ValueError(f"point at position {base + i} {why}")
        parts.append(out.raw)
    return b"".join(parts)


def _hash_and_blind_inline(job_id: str, ids: Sequence[str], key: bytes, base: int = 0) -> bytes:
    return _blind_inline(_hash_points(job_id, ids), key, base)


# Pool task entry points: one tuple argument each, so Pool.map can carry them.
def _blind_task(args: tuple[bytes, bytes, int]) -> bytes:
    return _blind_inline(*args)


def _hash_and_blind_task(args: tuple[str, list[str], bytes, int]) -> bytes:
    return _hash_and_blind_inline(*args)


class BlindingPool:
    """Spawned worker processes for large lists, started on first use and ended by close()
    (or the end of a `with` block). `workers` defaults to the machine's cores; a pool of
    one worker, or a list of at most PARALLEL_MIN points, blinds inline."""

    def __init__(self, workers: int | None = None) -> None:
        w = (os.cpu_count() or 1) if workers is None else workers
        if w < 1:
            raise ValueError("workers must be at least 1")
        self.workers = w
        self._pool: Pool | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether worker processes are running."""
        return self._pool is not None

    def workers_for(self, n: int) -> int:
        """How many processes to use for n points: 1 means inline in the caller."""
        return 1 if n <= PARALLEL_MIN else min(self.workers, n)

    def map(self, task: Callable[[Any], bytes], tasks: list[Any]) -> list[bytes]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the blinding pool is closed")
            if self._pool is None:
                self._pool = multiprocessing.get_context("spawn").Pool(self.workers)
            pool = self._pool
        return pool.map(task, tasks, chunksize=1)

    def close(self) -> None:
        """End the workers (idle between calls, so terminating loses nothing); idempotent."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()
            pool.join()

    def __enter__(self) -> BlindingPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
    step, extra = divmod(n, parts)
    bounds, start = [], 0
    for i in range(parts):
        end = start + step + (i < extra)
        bounds.append((start, end))
        start = end
    return bounds


def hash_to_points(job_id: str, ids: Sequence[str]) -> bytes:
    """One 32-byte point per id, concatenated, from SHA-512 of the domain, job id and id."""
    return _hash_points(job_id, ids)


def random_points(n: int) -> bytes:
    """n uniformly random points, concatenated: dummies that pad a list to its public bound."""
    if n < 0:
        raise ValueError("n must be non-negative")
    lib = _sodium()
    out = ctypes.create_string_buffer(POINT_BYTES)
    parts = []
    for _ in range(n):
        lib.crypto_core_ristretto255_random(out)
        parts.append(out.raw)
    return b"".join(parts)


def blind(points: bytes, key: bytes, *, pool: BlindingPool | None = None) -> bytes:
    """key*P for every 32-byte point, concatenated in input order; a large list is split
    across `pool`'s workers when one is given.

    Raises ValueError naming the position of a point libsodium refuses (an invalid
    encoding, or one whose product is the identity)."""
    points = bytes(points)
    if len(points) % POINT_BYTES:
        raise ValueError(f"points must be a multiple of {POINT_BYTES} bytes, got {len(points)}")
    _check_key(key)
    n = len(points) // POINT_BYTES
    w = 1 if pool is None else pool.workers_for(n)
    if pool is None or w == 1:
        return _blind_inline(points, key)
    tasks = [(points[a * POINT_BYTES: b * POINT_BYTES], key, a) for a, b in _bounds(n, w)]
    return b"".join(pool.map(_blind_task, tasks))


def hash_and_blind(job_id: str, ids: Sequence[str], key: bytes, *,
                   pool: BlindingPool | None = None) -> bytes:
    """blind(hash_to_points(job_id, ids), key), with each worker hashing its own ids so only
    the ids go out and only blinded points come back."""
    _check_key(key)
    n = len(ids)
    w = 1 if pool is None else pool.workers_for(n)
    if pool is None or w == 1:
        return _hash_and_blind_inline(job_id, ids, key)
    tasks = [(job_id, list(ids[a:b]), key, a) for a, b in _bounds(n, w)]
    return b"".join(pool.map(_hash_and_blind_task, tasks))
