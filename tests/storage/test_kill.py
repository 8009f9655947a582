"""SIGKILL a writer process mid-stream: every acknowledged save survives, the log reloads
as an exact prefix of what was written, and it accepts new appends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wal.backends import open_backend
from wal.records import Entry, HardState

_WRITER = r"""
import sys
from wal.backends import open_backend
from wal.records import Entry, HardState
from wal.snap import Snapshot

def data(i):
    return (b"%d." % i) * (i % 97 + 1)

name, root = sys.argv[1], sys.argv[2]
opts = {"segment_size": 64 * 1024, "preallocate": False} if name == "file" else {}
s = open_backend(name, root, **opts)
s.bootstrap(b"meta")
s.load()
i = 0
while True:
    batch = [Entry(i + k + 1, 1, data(i + k + 1)) for k in range(3)]
    s.save(HardState(1, 1, i + 3), batch)
    i += 3
    if i % 60 == 0:
        s.save_snapshot(Snapshot(i - 30, 1, b"snap@%d" % (i - 30)))
        s.compact(i - 30)
    print(i, flush=True)
"""


def _data(i: int) -> bytes:
    return (b"%d." % i) * (i % 97 + 1)


@pytest.mark.parametrize("backend", ["file", "sqlite"])
def test_kill_9_loses_nothing_acknowledged(tmp_path: Path, backend: str) -> None:
    root = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, backend, str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    acked = 0
    try:
        assert child.stdout is not None
        for line in child.stdout:
            acked = int(line)
            if acked >= 600:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert acked >= 600, child.stderr.read() if child.stderr else ""

    opts: dict[str, Any] = (
        {"segment_size": 64 * 1024, "preallocate": False} if backend == "file" else {}
    )
    s = open_backend(backend, root, **opts)
    state = s.load()
    assert state.metadata == b"meta"
    assert state.snapshot is not None
    assert state.last_index >= acked
    assert state.hard_state.commit >= acked
    first = state.first_index
    assert state.entries == [Entry(i, 1, _data(i)) for i in range(first, state.last_index + 1)]
    assert state.snapshot.data == b"snap@%d" % state.snapshot.index
    nxt = state.last_index + 1
    s.save(HardState(2, 1, nxt), [Entry(nxt, 2, b"after the crash")])
    s.close()
    t = open_backend(backend, root, **opts)
    assert t.load().entries[-1] == Entry(nxt, 2, b"after the crash")
    t.close()
