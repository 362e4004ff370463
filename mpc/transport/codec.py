"""Encoding of what crosses the network: raw tensors and a few plain objects, never pickle."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from mpc.errors import ProtocolAbort

DTYPES: dict[str, torch.dtype] = {
    "int64": torch.int64,
    "int32": torch.int32,
    "int16": torch.int16,
    "int8": torch.int8,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "float32": torch.float32,
    "float64": torch.float64,
}
_NAMES = {v: k for k, v in DTYPES.items()}

# 2 MiB chunks: large enough for gRPC's best throughput, well under the message limit.
CHUNK_BYTES = 2 * 1024 * 1024
MAX_TENSOR_BYTES = 4 * 1024 * 1024 * 1024


def dtype_name(dtype: torch.dtype) -> str:
    try:
        return _NAMES[dtype]
    except KeyError:
        raise ProtocolAbort(f"tensors of dtype {dtype} are not sent over the network") from None


def tensor_bytes(tensor: torch.Tensor) -> tuple[str, tuple[int, ...], bytes]:
    """dtype name, shape and little-endian bytes of a CPU tensor."""
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    data = t.contiguous().numpy().tobytes()
    return dtype_name(t.dtype), tuple(t.shape), data


def tensor_from_bytes(dtype: str, shape: tuple[int, ...], data: bytes | bytearray | memoryview,
                      origin: str = "peer") -> torch.Tensor:
    """Rebuild a tensor, checking dtype, shape and byte count against each other."""
    if dtype not in DTYPES:
        raise ProtocolAbort(f"{origin} sent a tensor of unknown dtype {dtype!r}")
    if any(d < 0 for d in shape):
        raise ProtocolAbort(f"{origin} sent a tensor with a negative dimension {shape}")
    torch_dtype = DTYPES[dtype]
    itemsize = torch.empty((), dtype=torch_dtype).element_size()
    count = 1
    for d in shape:
        count *= d
    if count * itemsize != len(data):
        raise ProtocolAbort(
            f"{origin} sent {len(data)} bytes for a {dtype} tensor of shape {tuple(shape)}"
        )
    if count == 0:
        return torch.empty(shape, dtype=torch_dtype)
    array = np.frombuffer(data, dtype=torch.empty((), dtype=torch_dtype).numpy().dtype)
    return torch.from_numpy(array.copy()).reshape(shape)


def chunk(data: bytes, size: int = CHUNK_BYTES) -> list[memoryview]:
    view = memoryview(data)
    if not data:
        return [view]
    return [view[i : i + size] for i in range(0, len(data), size)]


# Plain objects: CrypTen broadcasts sizes with broadcast_obj; nothing else is allowed.
def encode_object(obj: Any) -> bytes:
    return json.dumps(_to_json(obj), separators=(",", ":")).encode()


def decode_object(data: bytes, origin: str = "peer") -> Any:
    try:
        return _from_json(json.loads(data.decode()))
    except (ValueError, UnicodeDecodeError, TypeError, KeyError) as exc:
        raise ProtocolAbort(f"{origin} sent an object that does not decode: {exc}") from None


def _to_json(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, torch.Size):
        return {"size": list(obj)}
    if isinstance(obj, list | tuple):
        return {"list" if isinstance(obj, list) else "tuple": [_to_json(x) for x in obj]}
    raise ProtocolAbort(f"objects of type {type(obj).__name__} are not sent over the network")


def _from_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (kind, items), = value.items()
        if kind == "size" and all(isinstance(x, int) for x in items):
            return torch.Size(items)
        if kind == "list":
            return [_from_json(x) for x in items]
        if kind == "tuple":
            return tuple(_from_json(x) for x in items)
    raise ValueError(f"unexpected object {str(value)[:80]!r}")
