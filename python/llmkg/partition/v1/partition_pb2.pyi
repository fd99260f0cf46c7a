from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Filter(_message.Message):
    __slots__ = ("subject", "predicate", "object", "min_confidence")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    subject: str
    predicate: str
    object: str
    min_confidence: float
    def __init__(self, subject: _Optional[str] = ..., predicate: _Optional[str] = ..., object: _Optional[str] = ..., min_confidence: _Optional[float] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("partition", "vector", "k", "ef", "filter")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    partition: int
    vector: bytes
    k: int
    ef: int
    filter: Filter
    def __init__(self, partition: _Optional[int] = ..., vector: _Optional[bytes] = ..., k: _Optional[int] = ..., ef: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "subject", "predicate", "object", "confidence", "parent")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    PREDICATE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    subject: str
    predicate: str
    object: str
    confidence: float
    parent: int
    def __init__(self, node_id: _Optional[int] = ..., subject: _Optional[str] = ..., predicate: _Optional[str] = ..., object: _Optional[str] = ..., confidence: _Optional[float] = ..., parent: _Optional[int] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("score", "node")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    score: float
    node: Node
    def __init__(self, score: _Optional[float] = ..., node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class CandidatesRequest(_message.Message):
    __slots__ = ("partition", "vector", "k")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    partition: int
    vector: bytes
    k: int
    def __init__(self, partition: _Optional[int] = ..., vector: _Optional[bytes] = ..., k: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("node_id", "similarity")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    similarity: float
    def __init__(self, node_id: _Optional[int] = ..., similarity: _Optional[float] = ...) -> None: ...

class CandidatesResponse(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    def __init__(self, candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("partition", "node_id")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    partition: int
    node_id: int
    def __init__(self, partition: _Optional[int] = ..., node_id: _Optional[int] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class NudgeRequest(_message.Message):
    __slots__ = ("partition", "seq")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    partition: int
    seq: int
    def __init__(self, partition: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class NudgeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PartitionStatus(_message.Message):
    __slots__ = ("partition", "ready", "applied_seq", "lag")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    APPLIED_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAG_FIELD_NUMBER: _ClassVar[int]
    partition: int
    ready: bool
    applied_seq: int
    lag: int
    def __init__(self, partition: _Optional[int] = ..., ready: _Optional[bool] = ..., applied_seq: _Optional[int] = ..., lag: _Optional[int] = ...) -> None: ...

class HealthResponse(_message.Message):
    __slots__ = ("pod", "zone", "partitions")
    POD_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    pod: str
    zone: str
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionStatus]
    def __init__(self, pod: _Optional[str] = ..., zone: _Optional[str] = ..., partitions: _Optional[_Iterable[_Union[PartitionStatus, _Mapping]]] = ...) -> None: ...
