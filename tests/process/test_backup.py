"""Backup and restore, etcd's way: `raftctl snapshot save` from a live cluster, then the
offline `raftnode snapshot restore` into fresh data dirs that boot a NEW cluster with the
old keys and revision; a damaged or truncated backup is refused and writes nothing."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from cluster.client import Client
from cluster.clusterfile import ClusterFile, MemberEntry
from cluster.errors import SnapshotIntegrityError
from cluster.launcher import Launcher
from raftnode.bootstrap import BootSpec, boot
from raftnode.ids import cluster_id, member_id
from raftnode.mvcc.messages import PutRequest
from raftnode.mvcc.store import MVCCStore
from raftnode.restore import SHA256_SIZE
from raftnode.restore import main as restore_main
from raftnode.statemachine import StateMachine
from tests.process.conftest import FAST, Harness
from wal.backends import open_backend

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAFTNODE_", "RAFTCTL_", "ETCDCTL_"))}
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, check=False)


def restore_cmd(file: Path, cf: ClusterFile, m: MemberEntry) -> list[str]:
    """The restore command line of member ``m`` of the new cluster, etcdutl's flags."""
    return ["-m", "raftnode", "snapshot", "restore", str(file), "--name", m.name,
            "--initial-cluster", cf.initial_cluster(), "--initial-cluster-token", cf.token,
            "--initial-advertise-peer-urls", m.peer_url, "--data-dir", m.data_dir]


async def test_save_restore_into_a_new_cluster(harness: Harness, tmp_path: Path) -> None:
    await harness.up(3)
    async with harness.client() as c:
        for i in range(40):
            await c.put(f"backup/{i:02d}", f"v{i}")
        await c.put("backup/00", "twice")  # version 2
        await c.delete("backup/39")
        old = await c.status()
        old_kvs = (await c.get("backup/", prefix=True)).kvs
    rev = old.header.revision
    assert len(old_kvs) == 39 and rev == 43  # 1 + 40 puts + 1 put + 1 delete

    snap = tmp_path / "backup.db"
    r = run("-m", "cluster.raftctl", "--endpoints", harness.endpoint("n1"),
            "snapshot", "save", str(snap))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"Snapshot saved at {snap}\n"
    assert not list(tmp_path.glob("*.part"))

    # the old cluster keeps running: the new one must not talk to it (new token, new ports)
    new = Launcher(tmp_path / "restored")
    cf = new.create(3, flags=FAST, auto_ports=True)
    assert cf.token != harness.launcher.load().token
    for m in cf.members:
        r = run(*restore_cmd(snap, cf, m))
        assert r.returncode == 0, r.stderr
        assert f"revision {rev}, raft index 3" in r.stdout
    # a data dir is never overwritten
    r = run(*restore_cmd(snap, cf, cf.members[0]))
    assert r.returncode == 1 and "exists and is not empty" in r.stderr

    restored = Harness(tmp_path / "restored")
    try:
        for m in cf.members:
            await restored.start(m.name)
        await asyncio.to_thread(restored.launcher.wait_healthy, 30.0)
        async with restored.client() as c:
            st = await c.status()
            assert st.header.cluster_id != old.header.cluster_id
            assert st.header.cluster_id == cluster_id(
                member_id([m.peer_url], cf.token) for m in cf.members)
            assert st.header.revision == rev
            got = await c.get("backup/", prefix=True)
            assert got.kvs == old_kvs  # values and create/mod revisions and versions
            ml = await c.member_list()
            assert sorted((m.name, m.peer_urls) for m in ml.members) == sorted(
                (m.name, (m.peer_url,)) for m in cf.members)
            assert (await c.put("after/restore", "x")).header.revision == rev + 1
        assert await restored.converged() == rev + 1
    finally:
        restored.launcher.down(timeout=5.0)


def test_damaged_or_truncated_backup_is_refused(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Restore checks the file before writing anything: a flipped bit anywhere, a cut
    tail, an empty file, a missing file or a foreign file with a valid digest all fail
    with one clear line, exit 1, and no data dir appears."""
    good = tmp_path / "good.db"
    good.write_bytes(_snapshot_file())
    blob = good.read_bytes()
    flipped = bytearray(blob)
    flipped[len(blob) // 2] ^= 0x01
    cases = {
        "flipped.db": (bytes(flipped), "integrity check failed"),
        "digest.db": (blob[:-1] + bytes([blob[-1] ^ 0x80]), "integrity check failed"),
        "cut.db": (blob[: len(blob) - 100], "integrity check failed"),
        "tiny.db": (blob[:SHA256_SIZE], "is truncated"),
        "foreign.db": (b"not msgpack \xc1" + _digest(b"not msgpack \xc1"),
                       "is not a raftnode snapshot"),
        "missing.db": (None, "cannot read snapshot file"),
    }
    peer = "http://127.0.0.1:1"

    def argv(name: str, dest: Path) -> list[str]:
        return [str(tmp_path / name), "--name", "a", "--initial-cluster", f"a={peer}",
                "--initial-advertise-peer-urls", peer, "--data-dir", str(dest)]

    for name, (data, why) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        dest = tmp_path / f"{name}.data"
        assert restore_main(argv(name, dest)) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("raftnode snapshot restore: error: "), err
        assert why in err and err.count("\n") == 1, (name, err)
        assert not dest.exists()
        assert not list(tmp_path.glob(".*.restoring")), name
    # the same through the console script's entry point, in a real process
    r = run("-m", "raftnode", "snapshot", "restore", *argv("cut.db", tmp_path / "cut"))
    assert r.returncode == 1 and "integrity check failed" in r.stderr
    assert not (tmp_path / "cut").exists()
    # bad flags are a usage error (2), like the member's own
    assert restore_main([str(good), "--name", "b", "--initial-cluster", f"a={peer}",
                         "--data-dir", str(tmp_path / "x")]) == 2
    assert "initial cluster" in capsys.readouterr().err
    assert restore_main(["--name", "a"]) == 2
    assert "file" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


async def test_save_refuses_a_damaged_stream(tmp_path: Path) -> None:
    """`snapshot save` checks the stream's trailing SHA-256 and that it ran to its end
    before the rename: a member (or a proxy) that sends damaged or cut data leaves no
    backup behind. A tiny gateway on a real socket plays the member."""
    data = os.urandom(3000)
    streams = {
        "good": [data[:1000], data[1000:] + _digest(data)],
        "bad-digest": [data[:1000], data[1000:] + _digest(data[:-1])],
        "flipped": [data[:1000], bytes([data[1000] ^ 1]) + data[1001:] + _digest(data)],
        "cut": [data[:1000]],
    }

    case = ["good"]  # which stream the next request gets

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        left = len(data) + SHA256_SIZE
        for chunk in streams[case[0]]:
            left -= len(chunk)
            result = {"blob": base64.b64encode(chunk).decode()}
            if left:
                result["remaining_bytes"] = str(left)
            await resp.write(json.dumps({"result": result}).encode() + b"\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v3/maintenance/snapshot", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    ep = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with Client([ep]) as c:
            for name in streams:
                case[0] = name
                dest = tmp_path / f"{name}.db"
                if name == "good":
                    size = await c.snapshot(dest, endpoint=ep)
                    assert size == dest.stat().st_size == len(data) + SHA256_SIZE
                    assert dest.read_bytes() == data + _digest(data)
                    continue
                with pytest.raises(SnapshotIntegrityError) as e:
                    await c.snapshot(dest, endpoint=ep)
                assert ("ended early" if name == "cut" else "SHA-256 mismatch") in str(e.value)
                assert not dest.exists() and not list(tmp_path.glob("*.part")), name
    finally:
        await runner.cleanup()


def test_restored_data_dir_boots_as_a_member(tmp_path: Path) -> None:
    """In process: the data dir restore writes is one bootstrap.boot loads as an ordinary
    member: the snapshot at the initial conf changes, committed, the new voters, the keys."""
    from raftnode.config import parse_args
    from raftnode.restore import restore

    snap = tmp_path / "s.db"
    snap.write_bytes(_snapshot_file())
    urls = {"a": "http://127.0.0.1:7001", "b": "http://127.0.0.1:7002"}
    ic = ",".join(f"{n}={u}" for n, u in urls.items())
    cfg = parse_args(["--name", "b", "--initial-cluster", ic, "--initial-cluster-token", "t2",
                      "--initial-advertise-peer-urls", urls["b"],
                      "--data-dir", str(tmp_path / "b")], {})
    out = restore(snap, cfg)
    assert (out.index, out.revision) == (2, 6)
    storage = open_backend("file", tmp_path / "b")
    spec = BootSpec(name="b", peer_urls=(urls["b"],),
                    initial_cluster={n: (u,) for n, u in urls.items()}, state="new",
                    token="t2", election_tick=10)
    booted = boot(spec, storage, random.Random(1))
    storage.close()
    ids = sorted(member_id([u], "t2") for u in urls.values())
    assert not booted.fresh and booted.member_id == member_id([urls["b"]], "t2")
    assert booted.cluster_id == cluster_id(ids)
    assert (booted.applied, booted.snapshot_index) == (2, 2)
    assert booted.conf_state.voters == tuple(ids) and not booted.conf_state.learners
    assert sorted(m.name for m in booted.sm.member_list()) == ["a", "b"]
    assert not booted.sm.removed
    store = booted.sm.store
    assert store.revision == 6
    assert store.hash() == _store().hash()


def _store() -> MVCCStore:
    s = MVCCStore()
    for i in range(5):
        s.apply(PutRequest(key=b"k%d" % i, value=b"v%d" % i))
    return s


def _snapshot_file() -> bytes:
    """What `snapshot save` writes: a member's state machine snapshot + its SHA-256; the
    old cluster's membership (member 7, member 9 removed) must not survive the restore."""
    sm = StateMachine(_store())
    from raftnode.statemachine import MemberInfo

    sm.members[7] = MemberInfo(7, "old", ("http://10.0.0.1:2380",))
    sm.removed.add(9)
    data = sm.snapshot()
    return data + _digest(data)


def _digest(data: bytes) -> bytes:
    import hashlib

    return hashlib.sha256(data).digest()
