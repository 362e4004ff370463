"""The dealer's corrections make the parties' locally derived shares valid correlations."""

from __future__ import annotations

from functools import reduce

import pytest
import torch

from mpc.engine.correlations import Request, correction, count_wraps, local_components, party_stream
from mpc.engine.crypten_compat import load_crypten
from mpc.engine.rng import new_seed

N = 3


def shares(req: Request) -> list[list[torch.Tensor]]:
    streams = [party_stream(new_seed(), "job-1", r) for r in range(N)]
    parts = [local_components(req, s, r) for r, s in enumerate(streams)]
    parts[0][-1] = correction(req, streams)
    return parts


def add(parts: list[list[torch.Tensor]], i: int) -> torch.Tensor:
    return sum(p[i] for p in parts)


def xor(parts: list[list[torch.Tensor]], i: int) -> torch.Tensor:
    return reduce(torch.bitwise_xor, (p[i] for p in parts))


@pytest.mark.parametrize("op,size0,size1", [("mul", (4, 3), (4, 3)), ("mul", (4, 3), (3,)),
                                            ("matmul", (4, 3), (3, 5))])
def test_additive_triple(op: str, size0: tuple, size1: tuple) -> None:
    p = shares(Request(0, "additive_triple", size0, size1, op))
    assert torch.equal(add(p, 2), getattr(torch, op)(add(p, 0), add(p, 1)))


def test_square_binary_b2a_and_wraps() -> None:
    p = shares(Request(1, "square", (50,)))
    assert torch.equal(add(p, 1), add(p, 0) * add(p, 0))
    p = shares(Request(2, "binary_triple", (50,), (50,)))
    assert torch.equal(xor(p, 2), xor(p, 0) & xor(p, 1))
    p = shares(Request(3, "b2a", (50,)))
    assert set(xor(p, 0).unique().tolist()) <= {0, 1}
    assert torch.equal(add(p, 1), xor(p, 0))
    p = shares(Request(4, "wraps", (50,)))
    assert torch.equal(add(p, 1), count_wraps([q[0] for q in p]))


def test_count_wraps_agrees_with_crypten() -> None:
    load_crypten()
    from crypten.common.util import count_wraps as crypten_count_wraps

    values = [torch.randint(-2**63, 2**63 - 1, (1000,)) for _ in range(5)]
    assert torch.equal(count_wraps(values), crypten_count_wraps(values))


@pytest.mark.parametrize("req,message", [
    (Request(0, "conv2d", (3,)), "not served"),
    (Request(0, "additive_triple", (3,), (3,), "conv2d"), "served for"),
    (Request(0, "square", (3,), (3,)), "takes one size"),
    (Request(0, "additive_triple", (3, 4), (5, 6), "matmul"), "do not combine"),
    (Request(0, "binary_triple", (3, 4), (5, 4)), "do not broadcast"),
    (Request(0, "square", (1 << 14, 1 << 14)), "too large"),
    (Request(-1, "square", (3,)), "start at 0"),
])
def test_requests_outside_the_whitelist_are_refused(req: Request, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        req.validate()


@pytest.mark.parametrize("a,b", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                                 ((5, 2, 3), (3, 4)), ((5, 1, 2, 3), (7, 3, 4))])
def test_matmul_and_broadcast_shapes_agree_with_torch(a: tuple, b: tuple) -> None:
    from mpc.engine.correlations import broadcast_shape, matmul_shape

    assert matmul_shape(a, b) == tuple(torch.matmul(torch.ones(a), torch.ones(b)).shape)
    assert broadcast_shape((4, 1, 3), (5, 1)) == (4, 5, 3)
