"""raftnode: a Raft member speaking etcd's v3 JSON API."""

__version__ = "0.1.0"
