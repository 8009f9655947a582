"""Fail-stop on write/fsync errors, failpoint hooks, metrics observers, unsafe_no_fsync."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.wal.helpers import ents, read, segments
from wal import HOOKS, WAL, FsyncError, HardState, Hooks, SnapshotRecord, WALError
from wal.hooks import FSYNC_DURATION_BUCKETS, WAL_AFTER_FSYNC, WAL_BEFORE_FSYNC, WAL_WRITE


def _eio_at(name: str) -> Hooks:
    def fp(point: str) -> None:
        if point == name:
            raise OSError(errno.EIO, "injected EIO")

    return Hooks(failpoint=fp)


@pytest.mark.parametrize("point", [WAL_BEFORE_FSYNC, WAL_AFTER_FSYNC, WAL_WRITE])
def test_injected_eio_is_fatal_and_every_later_call_raises(wdir: Path, point: str) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(1, 1, 1), ents(1, 2))
    w.hooks = _eio_at(point)
    with pytest.raises(FsyncError, match="EIO"):
        w.save(HardState(1, 1, 2), ents(3, 4))
    assert w.failed
    w.hooks = Hooks()  # the fault is gone, but a failed fsync is never retried
    with pytest.raises(FsyncError):
        w.save(None, ents(3, 3))
    with pytest.raises(FsyncError):
        w.save_snapshot(SnapshotRecord(1, 1))
    with pytest.raises(FsyncError):
        w.release_lock_to(1)
    with pytest.raises(FsyncError):
        w.read_all()
    w.close()  # releases the files without writing
    with WAL.open(str(wdir)) as again:  # the lock was let go
        got = again.read_all()[2]
    assert got[:2] == ents(1, 2)


def test_non_os_error_from_a_failpoint_also_fails_the_wal(wdir: Path) -> None:
    class Panic(Exception):
        pass

    def fp(point: str) -> None:
        raise Panic(point)

    w = WAL.create(str(wdir), b"m")
    w.hooks = Hooks(failpoint=fp)
    with pytest.raises(Panic):
        w.save(None, ents(1, 1))
    with pytest.raises(FsyncError):
        w.save(None, ents(1, 1))
    w.close()


def test_module_hooks_see_every_fsync_and_write(wdir: Path) -> None:
    seen: list[str] = []
    fsyncs: list[float] = []
    writes: list[tuple[float, int]] = []
    HOOKS.failpoint = seen.append
    HOOKS.on_fsync = fsyncs.append
    HOOKS.on_write = lambda s, n: writes.append((s, n))
    w = WAL.create(str(wdir), b"m")
    seen.clear()
    fsyncs.clear()
    writes.clear()
    w.save(HardState(1, 1, 1), ents(1, 3, size=100))
    assert seen == [WAL_WRITE, WAL_BEFORE_FSYNC, WAL_AFTER_FSYNC]
    assert len(fsyncs) == 1 and fsyncs[0] >= 0
    assert len(writes) == 1 and writes[0][1] > 300
    w.close()


def test_fsync_buckets_are_etcds() -> None:
    assert FSYNC_DURATION_BUCKETS[0] == pytest.approx(0.001)
    assert FSYNC_DURATION_BUCKETS[-1] == pytest.approx(8.192)
    assert len(FSYNC_DURATION_BUCKETS) == 14


def test_unsafe_no_fsync_writes_but_never_syncs(wdir: Path) -> None:
    points: list[str] = []
    HOOKS.failpoint = points.append
    w = WAL.create(str(wdir), b"m", unsafe_no_fsync=True)
    w.save(HardState(1, 1, 1), ents(1, 5))
    w.save_snapshot(SnapshotRecord(3, 1))
    assert WAL_BEFORE_FSYNC not in points and WAL_AFTER_FSYNC not in points
    # flushed to the OS: another reader sees it before close
    assert read(wdir)[2] == ents(1, 5)
    w.close()


def test_write_error_from_a_full_disk_is_fatal(wdir: Path) -> None:
    """A real write error (EBADF stands in for EIO/ENOSPC) takes the same fail-stop path."""
    import os

    w = WAL.create(str(wdir), b"m")
    assert w._pw is not None
    fd = w._pw.fd
    # the descriptor becomes a read-only one: the next write fails for real (EBADF). Not
    # os.close: the background segment pre-creator could be handed the freed number,
    # and the "failing" write would land in its file
    ro = os.open(wdir / "ro", os.O_RDONLY | os.O_CREAT, 0o600)
    os.dup2(ro, fd)
    os.close(ro)
    with pytest.raises(FsyncError):
        w.save(None, ents(1, 1))
    with pytest.raises(FsyncError):
        w.save(None, ents(1, 1))
    w.close()
    assert len(segments(wdir)) == 1


def test_cut_failure_is_fatal(wdir: Path) -> None:
    calls = {"n": 0}

    def fp(point: str) -> None:
        if point == WAL_BEFORE_FSYNC:
            calls["n"] += 1
            if calls["n"] == 2:  # 1: the old tail, 2: the new header, both inside the cut
                raise OSError(errno.ENOSPC, "injected ENOSPC")

    w = WAL.create(str(wdir), b"m", segment_size=200)
    w.hooks = Hooks(failpoint=fp)
    with pytest.raises(FsyncError, match="ENOSPC"):
        w.save(None, ents(1, 10, size=40))
    with pytest.raises(WALError):
        w.save(None, ents(11, 11))
    w.close()
    assert [p.name for p in segments(wdir)] == ["0000000000000000-0000000000000000.wal"]
    assert read(wdir)[2] == ents(1, 10, size=40)
