"""Locks: one writer per directory, across processes and within one; purge honours them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.wal.helpers import ents, segments
from wal import WAL, Entry, WALLockedError, purge

ROOT = Path(__file__).resolve().parents[2]


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_second_process_opening_for_write_gets_wal_locked(wdir: Path) -> None:
    WAL.create(str(wdir), b"m").close()
    w = WAL.open(str(wdir))
    w.read_all()
    try:
        r = _child(
            f"""
            from wal import WAL, WALLockedError
            try:
                WAL.open({str(wdir)!r})
            except WALLockedError as e:
                print("LOCKED", e)
            """
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("LOCKED") and "already locked" in r.stdout
        # a reader in another process is fine beside the writer
        r = _child(
            f"""
            from wal import WAL
            print(len(WAL.open_for_read({str(wdir)!r}).read_all()[2]))
            """
        )
        assert r.returncode == 0 and r.stdout.strip() == "0", r.stderr
    finally:
        w.close()
    with WAL.open(str(wdir)) as again:  # released on close
        again.read_all()


def test_second_writer_in_the_same_process_is_refused(wdir: Path) -> None:
    WAL.create(str(wdir), b"m").close()
    with WAL.open(str(wdir)) as w:
        w.read_all()
        with pytest.raises(WALLockedError):
            WAL.open(str(wdir))
        w.save(None, ents(1, 1))  # the refused open left the first writer intact
    with WAL.open(str(wdir)) as w:
        assert w.read_all()[2] == ents(1, 1)


def test_purge_deletes_only_released_segments(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    for i in range(10):
        w.save(None, [Entry(i, 1)])
        w._cut()
    assert len(segments(wdir)) == 11
    assert purge(str(wdir), 2) == []  # everything still locked by this process
    assert len(segments(wdir)) == 11
    w.release_lock_to(5)  # releases segments starting at 0, 1, 2, 3
    removed = purge(str(wdir), 2)
    assert [Path(p).name[17:] for p in removed] == [f"{i:016x}.wal" for i in range(4)]
    assert len(segments(wdir)) == 7
    assert purge(str(wdir), 0) == []  # 0 means unlimited
    w.save(None, [Entry(10, 1)])  # the writer carries on in its locked tail
    w.close()
    assert segments(wdir)[0].name.startswith(f"{4:016x}-")
    assert len(segments(wdir)) == 7


def test_purge_stops_at_a_segment_locked_by_another_process(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    for i in range(4):
        w.save(None, [Entry(i, 1)])
        w._cut()
    w.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from wal import WAL
            w = WAL.open({str(wdir)!r})
            w.read_all()
            print("READY", flush=True)
            sys.stdin.readline()
            w.close()
            """)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        assert purge(str(wdir), 1) == []
        assert len(segments(wdir)) == 5
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(timeout=30)
    assert len(purge(str(wdir), 1)) == 4


def test_readers_and_verify_beside_a_busy_writer(wdir: Path) -> None:
    """A writer appending and cutting in a thread; readers only ever see a clean prefix."""
    import threading

    from wal import HardState, verify

    w = WAL.create(str(wdir), b"m", segment_size=4096)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(1, 200):
                w.save(HardState(1, 1, i), [Entry(i, 1, b"%d" % i * 20)])
                if stop.is_set():
                    break
        except BaseException as err:  # surfaced below
            errors.append(err)

    t = threading.Thread(target=write)
    t.start()
    seen = 0
    try:
        while t.is_alive() or seen == 0:
            with WAL.open_for_read(str(wdir)) as r:
                got = r.read_all()[2]
            assert [e.index for e in got] == list(range(1, len(got) + 1))
            assert all(e.data == b"%d" % e.index * 20 for e in got)
            assert len(got) >= seen
            seen = len(got)
            verify(str(wdir))
    finally:
        stop.set()
        t.join()
        w.close()
    assert not errors
    assert len(segments(wdir)) > 3
