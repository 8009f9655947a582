"""The etcd v3 JSON gateway: codec, error mapping, service protocol, aiohttp app."""

from raftnode.api.local import LocalService
from raftnode.api.server import DEFAULT_MAX_REQUEST_BYTES, create_app
from raftnode.api.service import KVService

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "KVService", "LocalService", "create_app"]
