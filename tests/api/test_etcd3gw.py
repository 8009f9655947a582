"""The real etcd3gw client (PyPI) against LocalService, unchanged, over real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import etcd3gw
import pytest

from raftnode.api.local import LocalService
from tests.api.conftest import ThreadedGateway


@pytest.fixture
def client() -> Iterator[etcd3gw.client]:  # type: ignore[valid-type]
    with ThreadedGateway(LocalService()) as gw:
        yield etcd3gw.client(host="127.0.0.1", port=gw.port, timeout=10)


def test_version_discovery_picks_v3(client) -> None:  # type: ignore[no-untyped-def]
    assert client.status()["version"] == "3.5.0"
    assert client.api_path == "/v3/"


def test_put_get_prefix_delete(client) -> None:  # type: ignore[no-untyped-def]
    assert client.put("foo", "bar") is True
    assert client.get("foo") == [b"bar"]
    assert client.get("missing") == []
    for k in ("/dir/a", "/dir/b", "/other"):
        client.put(k, k.upper())
    assert sorted(v for v, _ in client.get_prefix("/dir/")) == [b"/DIR/A", b"/DIR/B"]
    meta = client.get("foo", metadata=True)[0][1]
    assert meta["key"] == b"foo" and meta["version"] == "1"
    assert len(client.get_all()) == 4
    assert client.delete("foo") is True
    assert client.delete("foo") is False
    assert client.delete_prefix("/dir/") is True
    assert client.get_prefix("/dir/") == []


def test_create_and_replace(client) -> None:  # type: ignore[no-untyped-def]
    assert client.create("k", "v1") is True
    assert client.create("k", "v2") is False
    assert client.replace("k", "v1", "v3") is True
    assert client.replace("k", "v1", "v4") is False
    assert client.get("k") == [b"v3"]


def test_leases_grant_refresh_keys_revoke(client) -> None:  # type: ignore[no-untyped-def]
    lease = client.lease(ttl=30)
    assert lease.id > 0
    client.put("leased", "x", lease=lease)
    assert lease.keys() == [b"leased"]
    assert 0 < lease.ttl() <= 30
    assert lease.refresh() == 30
    assert lease.revoke() is True
    assert client.get("leased") == []
    assert lease.ttl() == -1
    assert lease.refresh() == -1  # TTL absent for an unknown lease


def test_lease_expiry(client) -> None:  # type: ignore[no-untyped-def]
    lease = client.lease(ttl=1)  # raised to the 2 s minimum
    client.put("eph", "x", lease=lease)
    deadline = time.monotonic() + 10
    while client.get("eph") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.get("eph") == []


def test_lock_and_members(client) -> None:  # type: ignore[no-untyped-def]
    lock = client.lock("resource", ttl=30)
    assert lock.acquire() is True
    other = client.lock("resource", ttl=30)
    assert other.acquire() is False
    assert lock.release() is True
    assert other.acquire() is True
    assert other.release() is True
    members = client.members()
    assert len(members) == 1 and members[0]["name"] == "default"
