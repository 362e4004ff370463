from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerFrame(_message.Message):
    __slots__ = ("kind", "job_id", "sender", "seq", "chunk", "chunks", "dtype", "shape", "data", "nonce", "tag", "reason", "cert_sha256")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[PeerFrame.Kind]
        HELLO: _ClassVar[PeerFrame.Kind]
        TENSOR: _ClassVar[PeerFrame.Kind]
        OBJECT: _ClassVar[PeerFrame.Kind]
        ABORT: _ClassVar[PeerFrame.Kind]
        CLOSE: _ClassVar[PeerFrame.Kind]
    KIND_UNSPECIFIED: PeerFrame.Kind
    HELLO: PeerFrame.Kind
    TENSOR: PeerFrame.Kind
    OBJECT: PeerFrame.Kind
    ABORT: PeerFrame.Kind
    CLOSE: PeerFrame.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CERT_SHA256_FIELD_NUMBER: _ClassVar[int]
    kind: PeerFrame.Kind
    job_id: str
    sender: int
    seq: int
    chunk: int
    chunks: int
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    nonce: bytes
    tag: str
    reason: str
    cert_sha256: str
    def __init__(self, kind: _Optional[_Union[PeerFrame.Kind, str]] = ..., job_id: _Optional[str] = ..., sender: _Optional[int] = ..., seq: _Optional[int] = ..., chunk: _Optional[int] = ..., chunks: _Optional[int] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., tag: _Optional[str] = ..., reason: _Optional[str] = ..., cert_sha256: _Optional[str] = ...) -> None: ...
