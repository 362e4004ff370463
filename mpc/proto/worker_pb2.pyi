from mpc.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitRequest(_message.Message):
    __slots__ = ("job_id", "spec_toml")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_TOML_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    spec_toml: bytes
    def __init__(self, job_id: _Optional[str] = ..., spec_toml: _Optional[bytes] = ...) -> None: ...

class Disclosure(_message.Message):
    __slots__ = ("min_cell", "suppress_zero", "min_contributors", "sensitivity")
    MIN_CELL_FIELD_NUMBER: _ClassVar[int]
    SUPPRESS_ZERO_FIELD_NUMBER: _ClassVar[int]
    MIN_CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    min_cell: int
    suppress_zero: bool
    min_contributors: int
    sensitivity: int
    def __init__(self, min_cell: _Optional[int] = ..., suppress_zero: _Optional[bool] = ..., min_contributors: _Optional[int] = ..., sensitivity: _Optional[int] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("job_id", "peers", "dealer_address", "disclosure")
    class PeersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: str
        def __init__(self, key: _Optional[int] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    DEALER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DISCLOSURE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    peers: _containers.ScalarMap[int, str]
    dealer_address: str
    disclosure: Disclosure
    def __init__(self, job_id: _Optional[str] = ..., peers: _Optional[_Mapping[int, str]] = ..., dealer_address: _Optional[str] = ..., disclosure: _Optional[_Union[Disclosure, _Mapping]] = ...) -> None: ...

class StartReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SealRequest(_message.Message):
    __slots__ = ("job_id", "head")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    head: _common_pb2.AuditHead
    def __init__(self, job_id: _Optional[str] = ..., head: _Optional[_Union[_common_pb2.AuditHead, _Mapping]] = ...) -> None: ...

class SealReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "party", "phase", "endpoint", "floors", "release", "failure", "detail", "head")
    class Phase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        PHASE_UNSPECIFIED: _ClassVar[JobEvent.Phase]
        ACCEPTED: _ClassVar[JobEvent.Phase]
        LOCAL_TABLE: _ClassVar[JobEvent.Phase]
        READY: _ClassVar[JobEvent.Phase]
        CONNECTED: _ClassVar[JobEvent.Phase]
        SHARING: _ClassVar[JobEvent.Phase]
        COMPUTING: _ClassVar[JobEvent.Phase]
        DISCLOSURE: _ClassVar[JobEvent.Phase]
        RELEASED: _ClassVar[JobEvent.Phase]
        DONE: _ClassVar[JobEvent.Phase]
        FAILED: _ClassVar[JobEvent.Phase]
    PHASE_UNSPECIFIED: JobEvent.Phase
    ACCEPTED: JobEvent.Phase
    LOCAL_TABLE: JobEvent.Phase
    READY: JobEvent.Phase
    CONNECTED: JobEvent.Phase
    SHARING: JobEvent.Phase
    COMPUTING: JobEvent.Phase
    DISCLOSURE: JobEvent.Phase
    RELEASED: JobEvent.Phase
    DONE: JobEvent.Phase
    FAILED: JobEvent.Phase
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    FLOORS_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    party: str
    phase: JobEvent.Phase
    endpoint: str
    floors: Disclosure
    release: Release
    failure: _common_pb2.Failure
    detail: str
    head: _common_pb2.AuditHead
    def __init__(self, job_id: _Optional[str] = ..., party: _Optional[str] = ..., phase: _Optional[_Union[JobEvent.Phase, str]] = ..., endpoint: _Optional[str] = ..., floors: _Optional[_Union[Disclosure, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., detail: _Optional[str] = ..., head: _Optional[_Union[_common_pb2.AuditHead, _Mapping]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("keep", "value", "nonce")
    KEEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    keep: _common_pb2.Tensor
    value: _common_pb2.Tensor
    nonce: bytes
    def __init__(self, keep: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., value: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., nonce: _Optional[bytes] = ...) -> None: ...
