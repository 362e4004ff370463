from __future__ import annotations

import numpy as np
import pytest
import torch

from mpc.engine.rng import KeyStream, SequentialStream, derive_key, new_seed


def test_draws_are_addressed_not_stateful() -> None:
    key = derive_key(new_seed(), "dealer", "job", "0")
    a, b = KeyStream(key), KeyStream(key)
    assert torch.equal(a.ring_at((4, 5), 7, 2), b.ring_at((4, 5), 7, 2))
    assert not torch.equal(a.ring_at((20,), 7, 2), a.ring_at((20,), 8, 2))
    assert not torch.equal(a.ring_at((20,), 7, 2), a.ring_at((20,), 7, 3))


def test_keys_are_separated_by_address() -> None:
    seed = new_seed()
    keys = {derive_key(seed, "przs", "job", "0->1"), derive_key(seed, "przs", "job", "1->2"),
            derive_key(seed, "przs", "job2", "0->1"), derive_key(seed, "local", "job")}
    assert len(keys) == 4
    with pytest.raises(ValueError, match="32 bytes"):
        derive_key(b"short", "x")


def test_bits_and_ring_ranges() -> None:
    s = KeyStream(derive_key(new_seed(), "t"))
    bits = s.bits_at((10_000,), 1, 0)
    assert set(bits.unique().tolist()) == {0, 1}
    assert 0.45 < bits.float().mean().item() < 0.55
    k = s.bits_at((10_000,), 20, 1)
    assert k.min() >= 0 and k.max() < 2**20
    ring = s.ring_at((100_000,), 2)
    assert ring.dtype == torch.int64
    assert (ring < 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    # every byte value about equally often
    counts = np.bincount(np.frombuffer(ring.numpy().tobytes(), dtype=np.uint8), minlength=256)
    expected = 800_000 / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 400  # 255 degrees of freedom: p < 1e-6 above this


def test_sequential_stream_counts_draws() -> None:
    key = derive_key(new_seed(), "t")
    seq, direct = SequentialStream(key, "next"), KeyStream(key)
    assert torch.equal(seq.ring((3,)), direct.ring_at((3,), 0))
    assert torch.equal(seq.bits((3,), 1), direct.bits_at((3,), 1, 1))
    assert seq.draws == 2
