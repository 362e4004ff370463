"""Linkage and overlap, each party's side (the dealer's side is in linking.py).

Linkage (two parties, left A and right B): each side pads its one-row-per-person list
to the public bound with random dummy points, shuffles it, blinds the pseudonyms
with a fresh per-job key (ristretto255, blind.py) and gives the list to the other
side, which blinds it again and hands it to the dealer. The dealer matches the two
doubly blinded lists; with the row masks (linking.py) A and B end up holding a
two-party sharing of the matched persons' attribute rows, one-hot encoded, and the
cross table is one Beaver matrix product (X_A^T X_B), put under disclosure control
with the linked count.

Overlap (N parties): every party's padded, shuffled list travels around the ring,
each party blinding it once, so that it reaches the dealer blinded by all N keys.
The dealer secret-shares back how many points occur in 1, 2, ..., N lists and how
many are distinct; inside MPC the parties take out their dummies (each its own
count, input secretly) and apply the disclosure rules.

Nobody learns another party's identifiers, even hashed; the parties learn the
number of linked persons (linkage); the dealer learns the padded sizes and the
intersection size (linkage) or the Venn diagram of the padded lists (overlap).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mpc.config.spec import DisclosureRules
from mpc.engine.channels import DealerChannel, PeerChannel
from mpc.engine.rng import random_permutation
from mpc.engine.secret import MpcContext
from mpc.protocols.aggregate import Released
from mpc.protocols.blind import POINT_BYTES, BlindingPool, blind, hash_and_blind, new_key
from mpc.protocols.disclosure import keep_mask
from mpc.protocols.linking import row_masks

Phase = Callable[[str], None]
DUMMY_PREFIX = "\x00dummy:"  # then 256 random bits: no real pseudonym can be expected to match


@dataclass(frozen=True)
class LinkIO:
    """What linkage and overlap may use besides the engine: typed channels to the peers
    and the dealer (never the mesh, a client or a socket), and the job's blinding pool
    (None: blind inline). Whoever runs the job owns the pool and closes it."""

    peers: PeerChannel
    dealer: DealerChannel
    pool: BlindingPool | None = None

    @property
    def job_id(self) -> str:
        return self.peers.job_id

    @property
    def rank(self) -> int:
        return self.peers.rank

    @property
    def parties(self) -> list[str]:
        return self.peers.parties

    @property
    def seed(self) -> bytes:
        """The 256-bit seed this party shares with the dealer."""
        return self.dealer.seed


@dataclass(frozen=True)
class LinkShares:
    left: torch.Tensor  # this party's share of the matched left rows (m x left width)
    right: torch.Tensor  # ...and of the matched right rows (m x right width)
    linked: int  # m, known to both parties


def padded_list(job_id: str, ids: list[str], pad_to: int, key: bytes,
                pool: BlindingPool | None = None) -> tuple[bytes, np.ndarray]:
    """Blinded pseudonyms plus dummies, shuffled; and the shuffle.

    A dummy is a fresh random 256-bit id that goes through the very same hash and blinding
    as a real one, so building the list takes as long for any number of real persons: its
    time shows the public bound, never the list's true size."""
    if len(ids) > pad_to:
        raise ValueError("more persons than the spec's pad_to")
    dummies = [DUMMY_PREFIX + os.urandom(32).hex() for _ in range(pad_to - len(ids))]
    points = hash_and_blind(job_id, [*ids, *dummies], key, pool=pool)
    order = random_permutation(pad_to)
    view = np.frombuffer(points, dtype=np.uint8).reshape(pad_to, POINT_BYTES)
    return view[order].tobytes(), order


def _as_tensor(points: bytes) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(points, dtype=np.uint8).copy())


def _recv_list(channel: PeerChannel, peer: int, pad_to: int) -> bytes:
    """A peer's padded list of points; anything but pad_to points is a ProtocolAbort."""
    received = channel.recv_tensor(peer, dtype=torch.uint8, shape=(pad_to * POINT_BYTES,))
    return received.numpy().tobytes()


def one_hot(cells: np.ndarray, width: int, rows: int) -> torch.Tensor:
    """rows x width int64: row k has a 1 at cells[k]; rows beyond len(cells) (dummies)
    are all zero."""
    out = torch.zeros((rows, width), dtype=torch.int64)
    out[torch.arange(len(cells)), torch.from_numpy(cells.astype(np.int64))] = 1
    return out


def linkage_shares(io: LinkIO, ids: list[str], cells: np.ndarray, widths: tuple[int, int],
                   pad_to: int, phase: Phase = lambda _: None) -> LinkShares:
    me, other = io.rank, 1 - io.rank
    link = io.peers.step("link")
    key = new_key()
    phase("blinding")
    mine, order = padded_list(io.job_id, ids, pad_to, key, io.pool)
    rows = one_hot(cells, widths[me], pad_to)[torch.from_numpy(order)]
    points = link.step("points")
    points.send_tensor(other, _as_tensor(mine))
    theirs = _recv_list(points, other, pad_to)
    # The left list, blinded by both keys, comes from the right side and vice versa.
    io.dealer.submit_points("right" if me == 0 else "left", blind(theirs, key, pool=io.pool))
    del key  # erased: a fresh key per job and partner
    phase("matching")
    masked = rows - row_masks(io.seed, io.job_id, me, pad_to, widths[me])
    masked_rows = link.step("rows")
    masked_rows.send_tensor(other, masked)
    their_masked = masked_rows.recv_tensor(other, dtype=torch.int64,
                                           shape=(pad_to, widths[other]))
    own = io.dealer.fetch_outcome("shares", widths, pad_to)
    positions = io.dealer.fetch_outcome("positions", widths, pad_to)
    corrections = io.dealer.fetch_outcome("corrections", widths, pad_to)
    theirs_share = their_masked[positions] + corrections
    left, right = (own, theirs_share) if me == 0 else (theirs_share, own)
    return LinkShares(left=left, right=right, linked=len(positions))


def cross_table(ctx: MpcContext, shares: LinkShares, rules: DisclosureRules,
                phase: Phase = lambda _: None) -> Released:
    """The cross table of the matched rows, then the linked count, under the rules."""
    phase("computing")
    widths = (shares.left.shape[1], shares.right.shape[1])
    if shares.linked:
        table = (MpcContext.from_shares(shares.left).t() @ MpcContext.from_shares(shares.right))
    else:
        table = ctx.public(torch.zeros(widths, dtype=torch.int64))
    values = ctx.cat([table.flatten(), ctx.public(torch.tensor([shares.linked]))])
    phase("disclosure")
    keep = keep_mask(ctx, values, None, rules)
    return Released(keep=keep, value=values * keep)


def overlap_shares(io: LinkIO, ids: list[str], pad_to: int,
                   phase: Phase = lambda _: None) -> tuple[torch.Tensor, int]:
    """This party's share of [seen at 1..N parties, distinct] (dummies included) and its
    own number of dummies."""
    n = len(io.parties)
    nxt, prv = (io.rank + 1) % n, (io.rank - 1) % n
    ring = io.peers.step("ring")
    key = new_key()
    phase("blinding")
    current, _ = padded_list(io.job_id, ids, pad_to, key, io.pool)
    for _ in range(n - 1):  # each list goes once around the ring, blinded at every stop
        ring.send_tensor(nxt, _as_tensor(current))
        current = blind(_recv_list(ring, prv, pad_to), key, pool=io.pool)
    del key
    phase("matching")
    io.dealer.submit_points(f"origin:{nxt}", current)
    return io.dealer.fetch_outcome("counts", (), pad_to), pad_to - len(ids)


def overlap_counts(ctx: MpcContext, counts_share: torch.Tensor, dummies: int,
                   rules: DisclosureRules, phase: Phase = lambda _: None) -> Released:
    """Take every party's dummies out of 'seen at one party' and 'distinct' (a dummy is
    a random point: seen once, by its own party), then apply the rules."""
    phase("computing")
    counts = MpcContext.from_shares(counts_share)
    n = counts.shape[0] - 1
    padding = ctx.share_from_each(torch.tensor([dummies], dtype=torch.int64))
    total = padding[0]
    for d in padding[1:]:
        total = total + d
    where = torch.zeros(n + 1, dtype=torch.int64)
    where[0] = where[n] = 1
    values = counts - total * where  # public 0/1 weights: local, no communication
    phase("disclosure")
    keep = keep_mask(ctx, values, None, rules)
    return Released(keep=keep, value=values * keep)
