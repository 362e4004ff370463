"""The dealer's corrections make the parties' locally derived shares valid correlations."""

from __future__ import annotations

from functools import reduce

import pytest
import torch

from mpc.engine.correlations import (
    MAX_CONV_ARGUMENT,
    Request,
    conv_arguments,
    correction,
    count_wraps,
    local_components,
    party_stream,
)
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
    (Request(0, "additive_triple", (3,), (3,), "conv3d"), "served for"),
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


# ---- convolutions: the triples CrypTen's conv1d, conv2d and transposed ones ask for ------

CONVS = [
    ("conv1d", (2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    ("conv1d", (4, 9), (3, 4, 2), {}),  # unbatched input
    ("conv2d", (2, 4, 6, 5), (6, 2, 2, 3), {"stride": (1, 2), "padding": (0, 1), "groups": 2}),
    ("conv2d", (1, 3, 7, 7), (2, 3, 3, 3), {"stride": 3, "padding": 2, "dilation": 2}),
    ("conv_transpose1d", (2, 4, 5), (4, 3, 3),
     {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}),
    ("conv_transpose2d", (1, 4, 4, 5), (4, 2, 2, 3),
     {"stride": (2, 1), "padding": (1, 0), "output_padding": (1, 0), "dilation": (1, 2),
      "groups": 2}),
    ("conv_transpose2d", (2, 2, 3, 3), (2, 3, 2, 2), {"dilation": 3, "output_padding": 2}),
]


def conv_request(op: str, x: tuple, w: tuple, kw: dict, seq: int = 0) -> Request:
    return Request(seq, "additive_triple", x, w, op, **conv_arguments(op, kw))


@pytest.mark.parametrize("op,x,w,kw", CONVS)
def test_conv_shapes_agree_with_torch(op: str, x: tuple, w: tuple, kw: dict) -> None:
    req = conv_request(op, x, w, kw)
    req.validate()
    expected = getattr(torch, op)(torch.ones(x), torch.ones(w), **kw).shape
    assert req.output_size() == tuple(expected)


@pytest.mark.parametrize("op,x,w,kw", CONVS)
def test_conv_triples(op: str, x: tuple, w: tuple, kw: dict) -> None:
    """Shares of a, b and c = conv(a, b) in Z_2^64, with torch's arguments."""
    p = shares(conv_request(op, x, w, kw))
    assert torch.equal(add(p, 2), getattr(torch, op)(add(p, 0), add(p, 1), **kw))


def test_int64_convolution_is_ring_arithmetic() -> None:
    """The dealer's int64 convolution wraps modulo 2^64 as the parties' shares do: equal to
    the same convolution of small values, and linear in each operand."""
    x, w = torch.arange(40).reshape(1, 2, 4, 5) - 20, torch.arange(16).reshape(2, 2, 2, 2) - 8
    assert torch.equal(torch.conv2d(x, w, padding=1),
                       torch.conv2d(x.double(), w.double(), padding=1).long())
    streams = [party_stream(new_seed(), "job-1", r) for r in range(2)]
    a0, a1 = (s.ring_at((1, 2, 4, 5), 0) for s in streams)
    b = streams[0].ring_at((2, 2, 2, 2), 1)
    assert torch.equal(torch.conv2d(a0 + a1, b), torch.conv2d(a0, b) + torch.conv2d(a1, b))


def test_conv_arguments_are_explicit_and_per_dimension() -> None:
    assert conv_arguments("conv2d", {}) == {"stride": (1, 1), "padding": (0, 0),
                                            "dilation": (1, 1), "groups": 1}
    assert conv_arguments("conv_transpose1d", {"stride": 2, "output_padding": [1]}) == {
        "stride": (2,), "padding": (0,), "dilation": (1,), "output_padding": (1,), "groups": 1}
    assert conv_arguments("mul", {}) == {}
    # the same convolution asked two ways is the same request (a retry must match)
    assert conv_request("conv2d", (1, 1, 4, 4), (1, 1, 2, 2), {"padding": 1}) == \
        conv_request("conv2d", (1, 1, 4, 4), (1, 1, 2, 2), {"padding": (1, 1), "stride": 1})


@pytest.mark.parametrize("op,kw,message", [
    ("conv3d", {}, "served for .* not 'conv3d'"),
    ("conv2d", {"bias": None}, "conv2d takes no keyword argument 'bias'"),
    ("conv2d", {"output_padding": 1}, "conv2d takes no keyword argument 'output_padding'"),
    ("conv2d", {"padding": "same"}, "conv2d: padding takes integers, got 'same'"),
    ("conv1d", {"stride": True}, "conv1d: stride takes integers"),
    ("conv2d", {"stride": 1.5}, "conv2d: stride takes integers"),
    ("mul", {"stride": 2}, "mul takes no keyword arguments, got stride"),
])
def test_unknown_convolutions_and_arguments_are_refused(op: str, kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        conv_arguments(op, kw)


def conv2d(x: tuple = (1, 2, 8, 8), w: tuple = (4, 2, 3, 3), **fields: object) -> Request:
    base: dict = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), "groups": 1}
    return Request(0, "additive_triple", x, w, "conv2d", **(base | fields))


@pytest.mark.parametrize("req,message", [
    (conv2d(stride=(0, 1)), r"stride must be integers in 1\.\."),
    (conv2d(padding=(-1, 0)), r"padding must be integers in 0\.\."),
    (conv2d(dilation=(1, MAX_CONV_ARGUMENT + 1)), "dilation must be integers"),
    (conv2d(stride=(1,)), "stride needs 2 values, got 1"),
    (conv2d(groups=0), "groups must be an integer in 1"),
    (conv2d(groups=3), "do not combine with groups=3"),
    (conv2d(output_padding=(1, 1)), "conv2d takes no output_padding"),
    (conv2d(w=(4, 3, 3, 3)), "do not combine"),
    (conv2d(w=(4, 2, 3)), "needs a kernel of 4 dimensions"),
    (conv2d(w=(4, 2, 9, 9)), "does not fit"),
    (conv2d(x=(1, 2, 0, 8)), "empty dimensions"),
    (Request(0, "additive_triple", (1, 2, 4), (2, 3, 2), "conv_transpose1d", stride=(2,),
             padding=(0,), dilation=(1,), groups=1, output_padding=(2,)),
     "must be smaller than the stride or the dilation"),
    (Request(0, "additive_triple", (3,), (3,), "mul", stride=(1,)),
     "mul takes no convolution arguments, got stride"),
    (Request(0, "square", (3,), groups=1), "square takes no convolution arguments"),
    # the existing bound on a request's elements: input, kernel and output together
    (conv2d(x=(1, 1, 6000, 6000), w=(1, 1, 1, 1)), "too large"),
    (Request(0, "additive_triple", (1, 1, 100, 100), (1, 1, 1, 1), "conv_transpose2d",
             **conv_arguments("conv_transpose2d", {"stride": 1024})), "too large"),  # output
])
def test_convolution_requests_outside_the_whitelist_are_refused(req: Request,
                                                                message: str) -> None:
    with pytest.raises(ValueError, match=message):
        req.validate()


def test_the_dealer_decodes_and_refuses_as_the_parties_do() -> None:
    """What the dealer runs on a request (request_from_proto, then validate): conv fields
    round-trip, an unknown operation, fields an operation does not take and an oversize
    convolution are refused with the op and argument named."""
    from mpc.engine.dealer_client import request_from_proto, request_to_proto
    from mpc.proto import dealer_pb2

    for op, x, w, kw in CONVS:
        req = conv_request(op, x, w, kw, seq=3)
        assert request_from_proto(request_to_proto("job-1", req)) == req
    unknown = request_to_proto("job-1", Request(0, "square", (5,)))
    unknown.op = 99  # type: ignore[assignment]
    with pytest.raises(ValueError, match="operation 99 is not served"):
        request_from_proto(unknown)
    cases = [
        (dealer_pb2.CorrelationRequest(op=dealer_pb2.ADDITIVE_TRIPLE, size0=[1, 1, 4, 4],
                                       size1=[1, 1, 2, 2], torch_op="conv3d"), "not 'conv3d'"),
        (dealer_pb2.CorrelationRequest(op=dealer_pb2.ADDITIVE_TRIPLE, size0=[4], size1=[4],
                                       torch_op="mul", padding=[1]), "mul takes no convolution"),
        (request_to_proto("job-1", conv2d(output_padding=(0, 0))), "takes no output_padding"),
        (request_to_proto("job-1", conv2d(x=(1, 1, 6000, 6000), w=(1, 1, 1, 1))), "too large"),
    ]
    for msg, message in cases:
        with pytest.raises(ValueError, match=message):
            request_from_proto(msg).validate()


def test_the_provider_refuses_unknown_keywords_before_asking_the_dealer() -> None:
    from mpc.engine.provider import DealerProvider
    from mpc.errors import EngineError

    provider = DealerProvider()  # unbound: a refusal comes before any request exists
    with pytest.raises(EngineError, match="conv2d takes no keyword argument 'bias'"):
        provider.generate_additive_triple((1, 1, 4, 4), (1, 1, 2, 2), "conv2d", bias=None)
    with pytest.raises(EngineError, match="keyword arguments only"):
        provider.generate_additive_triple((1, 1, 4, 4), (1, 1, 2, 2), "conv2d", None, 1)
    assert provider.requests == 0
