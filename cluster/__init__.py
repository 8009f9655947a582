"""Client library, raftctl and the local cluster launcher. Talks to members over HTTP only.

    from cluster import Client, txn
    async with Client(["127.0.0.1:2379"]) as c:
        await c.put("k", "v")

See docs/cluster.md for the API, the retry rules and the error types.
"""

from cluster import txn
from cluster.client import Client
from cluster.errors import (
    ClusterError,
    CompactedError,
    EtcdError,
    IndeterminateError,
    Timeout,
    Unavailable,
    Unsupported,
)
from cluster.sync import SyncClient

__all__ = [
    "Client",
    "ClusterError",
    "CompactedError",
    "EtcdError",
    "IndeterminateError",
    "SyncClient",
    "Timeout",
    "Unavailable",
    "Unsupported",
    "txn",
]
