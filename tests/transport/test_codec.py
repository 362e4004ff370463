from __future__ import annotations

import pytest
import torch

from mpc.errors import ProtocolAbort
from mpc.transport import codec


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.float32])
def test_tensor_roundtrip(dtype: torch.dtype) -> None:
    t = (torch.arange(24) % 7).to(dtype).reshape(2, 3, 4)
    name, shape, data = codec.tensor_bytes(t)
    assert torch.equal(codec.tensor_from_bytes(name, shape, data), t)


def test_byte_count_must_match_shape() -> None:
    _, _, data = codec.tensor_bytes(torch.arange(6))
    with pytest.raises(ProtocolAbort, match="48 bytes for a int64 tensor of shape"):
        codec.tensor_from_bytes("int64", (7,), data)
    with pytest.raises(ProtocolAbort, match="unknown dtype"):
        codec.tensor_from_bytes("object", (6,), data)


def test_chunks_cover_the_payload() -> None:
    data = bytes(range(256)) * 20_000  # 5 MB
    parts = codec.chunk(data, size=1 << 20)
    assert len(parts) == 5 and b"".join(parts) == data


def test_objects_are_plain_data_never_pickle() -> None:
    obj = [torch.Size([3, 4]), (1, "x", None), 2.5]
    assert codec.decode_object(codec.encode_object(obj)) == obj
    with pytest.raises(ProtocolAbort, match="not sent over the network"):
        codec.encode_object({"a": 1})
    with pytest.raises(ProtocolAbort, match="does not decode"):
        codec.decode_object(b"\x80\x04\x95")  # a pickle header
