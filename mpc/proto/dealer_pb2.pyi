from mpc.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CorrelationOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_UNSPECIFIED: _ClassVar[CorrelationOp]
    ADDITIVE_TRIPLE: _ClassVar[CorrelationOp]
    SQUARE: _ClassVar[CorrelationOp]
    BINARY_TRIPLE: _ClassVar[CorrelationOp]
    WRAPS: _ClassVar[CorrelationOp]
    B2A: _ClassVar[CorrelationOp]
OP_UNSPECIFIED: CorrelationOp
ADDITIVE_TRIPLE: CorrelationOp
SQUARE: CorrelationOp
BINARY_TRIPLE: CorrelationOp
WRAPS: CorrelationOp
B2A: CorrelationOp

class PointsChunk(_message.Message):
    __slots__ = ("job_id", "list", "rank", "count", "points")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    LIST_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    list: str
    rank: int
    count: int
    points: bytes
    def __init__(self, job_id: _Optional[str] = ..., list: _Optional[str] = ..., rank: _Optional[int] = ..., count: _Optional[int] = ..., points: _Optional[bytes] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = ("job_id", "rank", "part", "widths", "pad_to")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    WIDTHS_FIELD_NUMBER: _ClassVar[int]
    PAD_TO_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    rank: int
    part: str
    widths: _containers.RepeatedScalarFieldContainer[int]
    pad_to: int
    def __init__(self, job_id: _Optional[str] = ..., rank: _Optional[int] = ..., part: _Optional[str] = ..., widths: _Optional[_Iterable[int]] = ..., pad_to: _Optional[int] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("job_id", "spec_sha256", "parties", "rank")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_SHA256_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec_sha256: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    rank: int
    def __init__(self, job_id: _Optional[str] = ..., spec_sha256: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ..., rank: _Optional[int] = ...) -> None: ...

class JoinReply(_message.Message):
    __slots__ = ("seed",)
    SEED_FIELD_NUMBER: _ClassVar[int]
    seed: bytes
    def __init__(self, seed: _Optional[bytes] = ...) -> None: ...

class CorrelationRequest(_message.Message):
    __slots__ = ("job_id", "seq", "op", "size0", "size1", "torch_op", "stride", "padding", "dilation", "groups", "output_padding")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    SIZE0_FIELD_NUMBER: _ClassVar[int]
    SIZE1_FIELD_NUMBER: _ClassVar[int]
    TORCH_OP_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    PADDING_FIELD_NUMBER: _ClassVar[int]
    DILATION_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PADDING_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seq: int
    op: CorrelationOp
    size0: _containers.RepeatedScalarFieldContainer[int]
    size1: _containers.RepeatedScalarFieldContainer[int]
    torch_op: str
    stride: _containers.RepeatedScalarFieldContainer[int]
    padding: _containers.RepeatedScalarFieldContainer[int]
    dilation: _containers.RepeatedScalarFieldContainer[int]
    groups: int
    output_padding: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_id: _Optional[str] = ..., seq: _Optional[int] = ..., op: _Optional[_Union[CorrelationOp, str]] = ..., size0: _Optional[_Iterable[int]] = ..., size1: _Optional[_Iterable[int]] = ..., torch_op: _Optional[str] = ..., stride: _Optional[_Iterable[int]] = ..., padding: _Optional[_Iterable[int]] = ..., dilation: _Optional[_Iterable[int]] = ..., groups: _Optional[int] = ..., output_padding: _Optional[_Iterable[int]] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("job_id", "rank", "requests")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    rank: int
    requests: int
    def __init__(self, job_id: _Optional[str] = ..., rank: _Optional[int] = ..., requests: _Optional[int] = ...) -> None: ...

class LeaveReply(_message.Message):
    __slots__ = ("head",)
    HEAD_FIELD_NUMBER: _ClassVar[int]
    head: _common_pb2.AuditHead
    def __init__(self, head: _Optional[_Union[_common_pb2.AuditHead, _Mapping]] = ...) -> None: ...
