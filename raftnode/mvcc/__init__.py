"""The MVCC key-value state machine (etcd semantics), its requests and their log encoding."""

from raftnode.mvcc.codec import decode_request, encode_request
from raftnode.mvcc.errors import EtcdError, GrpcCode, RequestDecodeError, SnapshotError
from raftnode.mvcc.store import MVCCStore
from raftnode.mvcc.validate import check_request

__all__ = ["EtcdError", "GrpcCode", "MVCCStore", "RequestDecodeError", "SnapshotError",
           "check_request", "decode_request", "encode_request"]
