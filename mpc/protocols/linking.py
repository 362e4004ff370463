"""The dealer's side of linkage and overlap, and the randomness it shares with parties.

Linkage of a left party A and a right party B (README, "Linkage and overlap"):
1. Each side's padded, shuffled list of blinded pseudonyms is blinded again by the
   other side; the dealer D receives both doubly blinded lists and matches them into
   pairs (i_t, j_t), in random order.
2. A sends B its attribute rows masked with R_A, a stream A shares with D. D sends A
   fresh random shares s_t and sends B the positions i_t with R_A[i_t] - s_t, so
   that B's share of matched row t is x_A[i_t] - s_t and A's is s_t. Nothing A
   receives depends on R_A, so A cannot tell which of its records matched.
   Symmetrically for B's rows.
Overlap of N parties: D receives every party's list blinded by all N keys, counts in
how many lists each point occurs (the Venn diagram of the padded lists, which D
learns), and secret-shares the histogram into the parties' computation; D never
releases a count.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import torch

from mpc.engine.rng import KeyStream, derive_key, random_permutation
from mpc.protocols.blind import POINT_BYTES


def mask_stream(seed: bytes, job_id: str, rank: int) -> KeyStream:
    """The stream party `rank` and D derive from their shared seed for row masks."""
    return KeyStream(derive_key(seed, "link-mask", job_id, str(rank)))


def row_masks(seed: bytes, job_id: str, rank: int, rows: int, width: int) -> torch.Tensor:
    return mask_stream(seed, job_id, rank).ring_at((rows, width), 0)


def points_of(blob: bytes) -> list[bytes]:
    if len(blob) % POINT_BYTES:
        raise ValueError("a list of points must be a whole number of 32-byte points")
    return [blob[k: k + POINT_BYTES] for k in range(0, len(blob), POINT_BYTES)]


def match(left: bytes, right: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) with left[i] == right[j], in a random order."""
    where = {p: j for j, p in enumerate(points_of(right))}
    pairs = [(i, where[p]) for i, p in enumerate(points_of(left)) if p in where]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = random_permutation(len(pairs))
    arr = np.array(pairs, dtype=np.int64)[order]
    return arr[:, 0].copy(), arr[:, 1].copy()


def fresh_shares(shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform ring elements from a fresh key: D's own randomness, shared with nobody."""
    return KeyStream(os.urandom(32)).ring_at(shape, 0)


def link_outcome(job_id: str, seeds: list[bytes], pad_to: int, widths: tuple[int, int],
                 left: bytes, right: bytes) -> list[list[torch.Tensor]]:
    """What D sends each side: [its shares of its matched rows, the positions of the
    matched rows in the other side's list, corrections for the other side's rows]."""
    i, j = match(left, right)
    m = len(i)
    c_left, c_right = widths
    s_left, s_right = fresh_shares((m, c_left)), fresh_shares((m, c_right))
    r_left = row_masks(seeds[0], job_id, 0, pad_to, c_left)
    r_right = row_masks(seeds[1], job_id, 1, pad_to, c_right)
    corr_left = r_left[torch.from_numpy(i)] - s_left    # for B: completes A's rows
    corr_right = r_right[torch.from_numpy(j)] - s_right  # for A: completes B's rows
    return [[s_left, torch.from_numpy(j), corr_right],
            [s_right, torch.from_numpy(i), corr_left]]


def venn_histogram(lists: list[bytes]) -> torch.Tensor:
    """[points seen in exactly 1, 2, ..., N lists, distinct points], as int64."""
    n = len(lists)
    seen = Counter(p for blob in lists for p in set(points_of(blob)))
    hist = Counter(seen.values())
    return torch.tensor([hist.get(k, 0) for k in range(1, n + 1)] + [len(seen)],
                        dtype=torch.int64)


def split_into_shares(value: torch.Tensor, parties: int) -> list[torch.Tensor]:
    """Additive shares mod 2^64 that sum to `value`: any parties-1 of them are random."""
    shares = [fresh_shares(tuple(value.shape)) for _ in range(parties - 1)]
    first = value - sum(shares, torch.zeros_like(value))
    return [first, *shares]
