"""Watches: one shared hub per member (hub.py) and the ``/v3/watch`` stream (stream.py)."""

from raftnode.watch.hub import FilterType, WatchCreate, WatchHub, WatchResponse, WatchStream

__all__ = ["FilterType", "WatchCreate", "WatchHub", "WatchResponse", "WatchStream"]
