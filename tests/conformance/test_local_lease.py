"""The single-member LocalService keeps etcd's lease rule too (no cluster needed): a
keepalive that comes after the TTL ran out revokes the lease instead of renewing it."""

from __future__ import annotations

from raftnode.api.local import LocalService
from raftnode.mvcc.messages import (
    LeaseGrantRequest,
    LeaseGrantResponse,
    PutRequest,
    RangeRequest,
    RangeResponse,
)


async def test_keepalive_after_expiry_revokes_instead_of_renewing() -> None:
    now = [100.0]
    svc = LocalService(clock=lambda: now[0])
    grant = await svc.write(LeaseGrantRequest(TTL=5))
    assert isinstance(grant, LeaseGrantResponse)
    await svc.write(PutRequest(b"k", b"v", lease=grant.ID))
    now[0] += 4.9
    assert await svc.lease_keepalive(grant.ID) == 5  # in time: renewed to a full TTL
    now[0] += 5.0
    assert await svc.lease_keepalive(grant.ID) == 0  # too late: gone, its keys with it
    assert svc.store.lease(grant.ID) is None
    r = await svc.read(RangeRequest(b"k"), serializable=True)
    assert isinstance(r, RangeResponse) and r.kvs == ()
