"""Cryptographic randomness for masks, zero sharings and correlations.

Every stream is ChaCha20 keyed by a 256-bit key derived (HKDF-SHA256) from a
256-bit seed and the stream's address (job, role, purpose). A draw is addressed
by (index, sub): the 96-bit ChaCha20 nonce is sub (32 bits) || index (64 bits),
with the block counter starting at zero, so draw i of a stream is a pure function
of (key, i) rather than of some mutable generator state: the dealer and a party
compute the same draw independently, and a retried request gets the same bytes.
torch.Generator (Mersenne Twister) is never used.

Shuffles (linkage lists, the dealer's pairs) use numpy's samplers over randomgen's
ChaCha20 bit generator under a fresh 256-bit key: `chacha_generator`, `random_permutation`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SEED_BYTES = 32
_DOMAIN = b"mpc-health/v1/"


def new_seed() -> bytes:
    return os.urandom(SEED_BYTES)


def derive_key(seed: bytes, *address: str) -> bytes:
    """A 256-bit key for the stream at `address`, from a 256-bit seed."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seeds are {SEED_BYTES} bytes, got {len(seed)}")
    info = _DOMAIN + "\x1f".join(address).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(seed)


def _numel(size: Sequence[int]) -> int:
    return math.prod(int(d) for d in size)


def as_size(size: int | Sequence[int] | torch.Size) -> tuple[int, ...]:
    if isinstance(size, int):
        return (size,)
    return tuple(int(d) for d in size)


class KeyStream:
    """Random tensors addressed by (index, sub) under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("ChaCha20 keys are 32 bytes")
        self._key = key

    def bytes_at(self, n: int, index: int, sub: int = 0) -> bytes:
        if not (0 <= index < 2**64 and 0 <= sub < 2**32):
            raise ValueError("stream address out of range")
        nonce = (0).to_bytes(4, "little") + sub.to_bytes(4, "little") + index.to_bytes(8, "little")
        encryptor = Cipher(algorithms.ChaCha20(self._key, nonce), mode=None).encryptor()
        return encryptor.update(bytes(n))

    def ring_at(self, size: Sequence[int], index: int, sub: int = 0) -> torch.Tensor:
        """Uniform elements of Z_2^64 (as int64) of the given shape."""
        size = as_size(size)
        raw = self.bytes_at(8 * _numel(size), index, sub)
        return torch.from_numpy(np.frombuffer(raw, dtype="<i8").copy()).reshape(size)

    def bits_at(self, size: Sequence[int], bitlength: int, index: int,
                sub: int = 0) -> torch.Tensor:
        """Uniform integers in [0, 2^bitlength) as int64; bitlength 64 means the whole ring."""
        if not 1 <= bitlength <= 64:
            raise ValueError(f"bitlength must be in 1..64, got {bitlength}")
        ring = self.ring_at(size, index, sub)
        if bitlength == 64:
            return ring
        return ring & ((1 << bitlength) - 1)


class SequentialStream:
    """Stands in for a torch.Generator inside CrypTen: the n-th draw is draw n of a KeyStream.

    CrypTen's parties draw from their shared generators in lock-step, so the draw
    number is the request index every holder of the key agrees on.
    """

    def __init__(self, key: bytes, name: str) -> None:
        self._stream = KeyStream(key)
        self.name = name
        self.draws = 0

    def _next_index(self) -> int:
        index = self.draws
        self.draws += 1
        return index

    def ring(self, size: Sequence[int]) -> torch.Tensor:
        return self._stream.ring_at(size, self._next_index())

    def bits(self, size: Sequence[int], bitlength: int) -> torch.Tensor:
        return self._stream.bits_at(size, bitlength, self._next_index())

    def __repr__(self) -> str:
        return f"SequentialStream({self.name!r}, draws={self.draws})"


def chacha_generator(key: bytes | None = None) -> np.random.Generator:
    """numpy's samplers over ChaCha20 (20 rounds) with a 256-bit key: never Mersenne
    Twister, and a fresh key unless one is given."""
    from randomgen import ChaCha  # imported on first use: only shuffles need it

    key = key if key is not None else os.urandom(SEED_BYTES)
    if len(key) != SEED_BYTES:
        raise ValueError("generator keys are 32 bytes")
    words = np.frombuffer(key, dtype="<u8").copy()
    return np.random.Generator(ChaCha(key=words, counter=0, rounds=20))


def random_permutation(n: int) -> np.ndarray:
    """A uniformly random permutation of range(n) from ChaCha20 under a fresh key; apply the
    same one to a list and its attribute rows."""
    return chacha_generator().permutation(n)
