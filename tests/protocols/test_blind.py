"""Commutative blinding: commutativity (inline and through a spawn pool), the pool's
lifetime, the hash to the group, dummies, refusal of bad points and keys, and the shuffle."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mpc.engine.rng import random_permutation
from mpc.protocols import blind as bl
from mpc.protocols.blind import (
    POINT_BYTES,
    BlindingPool,
    blind,
    hash_and_blind,
    hash_to_points,
    new_key,
    random_points,
)

JOB = "job-0001"


def split(points: bytes) -> list[bytes]:
    return [points[i: i + POINT_BYTES] for i in range(0, len(points), POINT_BYTES)]


def ids(n: int) -> list[str]:
    return [f"patient-{i:07d}" for i in range(n)]


def test_commutative_inline() -> None:
    h = hash_to_points(JOB, ids(1000))
    k1, k2 = new_key(), new_key()
    assert blind(blind(h, k1), k2) == blind(blind(h, k2), k1)


def test_pool_path_matches_inline_and_commutes() -> None:
    n = 50_000
    assert n > bl.PARALLEL_MIN
    names = ids(n)
    k1, k2 = new_key(), new_key()
    h = hash_to_points(JOB, names)
    inline = blind(h, k1)
    with BlindingPool(workers=2) as pool:
        pooled = blind(h, k1, pool=pool)
        assert pool.started  # the pool really ran
        assert pooled == inline
        assert hash_and_blind(JOB, names, k1, pool=pool) == inline
        assert blind(pooled, k2, pool=pool) == blind(blind(h, k2, pool=pool), k1)
    assert not pool.started  # the with block ended the workers


def test_pool_lifetime() -> None:
    pool = BlindingPool(workers=2)
    small = random_points(10)
    assert blind(small, new_key(), pool=pool)  # small lists are blinded inline...
    assert not pool.started  # ...so no process is started for them
    assert BlindingPool(workers=1).workers_for(10 * bl.PARALLEL_MIN) == 1
    pool.close()
    pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        blind(random_points(bl.PARALLEL_MIN + 1), new_key(), pool=pool)


def test_pool_error_names_global_position() -> None:
    h = bytearray(random_points(bl.PARALLEL_MIN + 10))
    bad = bl.PARALLEL_MIN // 2 + 3  # in the second chunk, so the chunk offset must be added
    h[bad * POINT_BYTES: (bad + 1) * POINT_BYTES] = b"\xff" * POINT_BYTES
    with BlindingPool(workers=2) as pool, pytest.raises(ValueError, match=f"position {bad} "):
        blind(bytes(h), new_key(), pool=pool)


def test_hash_and_blind_equals_two_steps() -> None:
    k = new_key()
    names = ids(200)
    assert hash_and_blind(JOB, names, k) == blind(hash_to_points(JOB, names), k)


def test_hash_is_deterministic_and_job_bound() -> None:
    names = ids(500)
    a = hash_to_points(JOB, names)
    assert len(a) == 500 * POINT_BYTES
    assert a == hash_to_points(JOB, names)
    other = hash_to_points("job-0002", names)
    assert not set(split(a)) & set(split(other))
    assert len(set(split(a))) == 500


def test_hash_separates_job_and_id() -> None:
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert hash_to_points("ab", ["c"]) != hash_to_points("a", ["bc"])


def test_random_points_valid_and_distinct() -> None:
    pts = random_points(300)
    assert len(pts) == 300 * POINT_BYTES
    assert len(set(split(pts))) == 300
    assert len(blind(pts, new_key())) == len(pts)


@pytest.mark.parametrize("bad", [b"\xff" * POINT_BYTES, bytes(POINT_BYTES)],
                         ids=["non-canonical", "identity"])
def test_invalid_point_names_position(bad: bytes) -> None:
    pts = split(random_points(5))
    pts[3] = bad
    with pytest.raises(ValueError, match="position 3 "):
        blind(b"".join(pts), new_key())


def test_bad_lengths_and_keys() -> None:
    pts = random_points(2)
    with pytest.raises(ValueError, match="multiple of 32"):
        blind(pts[:-1], new_key())
    with pytest.raises(ValueError):
        blind(pts, new_key()[:31])
    with pytest.raises(ValueError):
        blind(pts, bytes(32))
    with pytest.raises(ValueError):
        blind(pts, b"\xff" * 32)  # above the group order
    with pytest.raises(ValueError):
        BlindingPool(workers=0)
    assert blind(b"", new_key()) == b""
    assert hash_to_points(JOB, []) == b""


def test_keys_fresh() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(k) == 32 for k in keys)


def test_blinding_hides_points() -> None:
    # DDH sanity: blinding changes every point, and two keys give unrelated lists.
    h = hash_to_points(JOB, ids(200))
    b1, b2 = blind(h, new_key()), blind(h, new_key())
    assert not set(split(h)) & set(split(b1))
    assert not set(split(b1)) & set(split(b2))


def test_permutation() -> None:
    p, q = random_permutation(1000), random_permutation(1000)
    assert np.array_equal(np.sort(p), np.arange(1000))
    assert not np.array_equal(p, q)
    assert len(random_permutation(0)) == 0


def test_blind_imports_nothing_heavy() -> None:
    """The spawned workers import only blind.py: it must not pull in numpy, torch or the
    noise samplers."""
    import subprocess
    import sys

    code = ("import sys, mpc.protocols.blind; "
            "print(sorted(m for m in ('numpy', 'torch', 'mpc.protocols.noise', 'randomgen') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


ORPHAN = """
import os
from mpc.protocols.blind import PARALLEL_MIN, BlindingPool, blind, hash_to_points, new_key
pool = BlindingPool(workers=2)
blind(hash_to_points("job", [str(i) for i in range(PARALLEL_MIN + 10)]), new_key(), pool=pool)
print(" ".join(str(p.pid) for p in pool._pool._pool), flush=True)
os._exit(0)  # as a job process leaves on an abort order: the pool is not closed
"""


def test_pool_processes_end_with_the_process_that_made_them() -> None:
    made = subprocess.run([sys.executable, "-c", ORPHAN], capture_output=True, text=True,
                          timeout=120, check=True)
    pids = [int(p) for p in made.stdout.split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 10
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if _running(p)]
    assert alive == []


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
