"""Conversions between protobuf messages and the project's values, in one place."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mpc.config.rules import DisclosureRules
from mpc.errors import Code, ProtocolAbort
from mpc.proto import common_pb2, worker_pb2
from mpc.transport import codec


def failure_to_proto(party: str, code: Code, message: str) -> common_pb2.Failure:
    """A failure as it goes on the wire: where it arose, its code, a message for people."""
    return common_pb2.Failure(party=party, code=str(Code(code)), message=message)


def failure_from_proto(msg: common_pb2.Failure) -> tuple[str, Code, str]:
    """(party, code, message) of a failure from the wire. A code this version does not
    know (a newer or a broken peer), or none, is Code.UNKNOWN, never an error: the message
    then says which code was sent. UNKNOWN is not an echo, so it counts as a root cause."""
    try:
        code = Code(msg.code)
    except ValueError:
        code = Code.UNKNOWN
    message = msg.message
    if code is Code.UNKNOWN and msg.code != Code.UNKNOWN:
        sent = f"failure code {msg.code[:40]!r}" if msg.code else "no failure code"
        message = f"{message} ({sent})" if message else sent
    return msg.party, code, message


def rules_to_proto(rules: DisclosureRules) -> worker_pb2.Disclosure:
    return worker_pb2.Disclosure(min_cell=rules.min_cell, suppress_zero=rules.suppress_zero,
                                 min_contributors=rules.min_contributors,
                                 sensitivity=rules.sensitivity)


def rules_from_proto(msg: worker_pb2.Disclosure) -> DisclosureRules:
    return DisclosureRules(min_cell=msg.min_cell, suppress_zero=msg.suppress_zero,
                           min_contributors=msg.min_contributors,
                           sensitivity=msg.sensitivity)


def tensor_to_proto(value: torch.Tensor | np.ndarray) -> common_pb2.Tensor:
    """One message; for tensors that may exceed the message limit use tensor_chunks."""
    tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) \
        else value
    dtype, shape, data = codec.tensor_bytes(tensor)
    return common_pb2.Tensor(dtype=dtype, shape=shape, data=data)


def tensor_chunks(tensor: torch.Tensor) -> list[common_pb2.Tensor]:
    """A tensor as a stream of messages below gRPC's size limit; dtype and shape in the first."""
    dtype, shape, data = codec.tensor_bytes(tensor)
    parts = codec.chunk(data)
    return [common_pb2.Tensor(dtype=dtype if i == 0 else "", shape=shape if i == 0 else (),
                              data=bytes(p)) for i, p in enumerate(parts)]


def tensor_from_chunks(chunks: Sequence[common_pb2.Tensor], origin: str) -> torch.Tensor:
    """The inverse of tensor_chunks (and of tensor_to_proto, as a single chunk)."""
    if not chunks:
        raise ProtocolAbort(f"{origin} sent no data")
    first = chunks[0]
    return codec.tensor_from_bytes(first.dtype, tuple(first.shape),
                                   b"".join(c.data for c in chunks), origin=origin)
