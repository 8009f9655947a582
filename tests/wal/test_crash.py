"""Property: random saves/cuts/snapshots/reopens, then a crash during the last save.

The crash damages only bytes the last save wrote after the last completed sync (what a
real power cut can touch): the tail of the last segment is truncated at a random byte,
or a random run of its sectors reads back as zeros (unwritten), or pseudo-random
garbage (stale blocks) appears past the end of the data. The log must then reopen
(after ``repair`` where the tail is torn) to exactly the durable state plus a prefix of
the unsynced records — never to corrupt or reordered data — and accept appends that read
back intact.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.wal.helpers import segments
from wal import WAL, Entry, HardState, SnapshotRecord, UnexpectedEOFError, repair
from wal.framing import SECTOR_SIZE_BYTES, decode_frame_size

Rec = Entry | HardState


@dataclass
class Model:
    entries: list[Entry] = field(default_factory=list)
    state: HardState = field(default_factory=HardState)

    def apply(self, rec: Rec) -> None:
        if isinstance(rec, Entry):
            del self.entries[rec.index - 1 :]
            self.entries.append(rec)
        else:
            self.state = rec

    def copy(self) -> Model:
        return Model(list(self.entries), self.state)

    def key(self) -> tuple[tuple[Entry, ...], HardState]:
        return tuple(self.entries), self.state


@st.composite
def save_op(
    draw: st.DrawFn, last: int, least: int = 0, most: int = 6, size: tuple[int, int] = (0, 300)
) -> tuple[str, HardState | None, list[Entry]]:
    start = draw(st.integers(max(1, last - 3), last + 1))
    n = draw(st.integers(least, most))
    term = draw(st.integers(1, 5))
    ents = [
        Entry(i, term, draw(st.binary(min_size=size[0], max_size=size[1])), draw(st.integers(0, 1)))
        for i in range(start, start + n)
    ]
    hs = draw(
        st.none()
        | st.builds(HardState, st.integers(1, 5), st.integers(0, 3), st.integers(0, 40))
    )
    return "save", hs, ents


def _records(hs: HardState | None, ents: list[Entry]) -> list[Rec]:
    recs: list[Rec] = list(ents)
    if hs is not None and not hs.is_empty():
        recs.append(hs)
    return recs


def _open(d: Path, seg: int, pre: bool) -> tuple[WAL, tuple[bytes, HardState, list[Entry]]]:
    w = WAL.open(str(d), segment_size=seg, preallocate=pre)
    try:
        return w, w.read_all()
    except BaseException:
        w.close()
        raise


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_crash_recovers_a_prefix_and_accepts_appends(tmp_path: Path, data: st.DataObject) -> None:
    d = tmp_path / "wal"
    shutil.rmtree(d, ignore_errors=True)
    seg = data.draw(st.sampled_from([512, 1024, 4096, 1 << 20]), label="segment_size")
    pre = data.draw(st.booleans(), label="preallocate")
    w = WAL.create(str(d), b"meta", segment_size=seg, preallocate=pre)
    model = Model()
    durable = Model()  # the state as of the last sync
    pending: list[Rec] = []  # written after the last sync
    try:
        for _ in range(data.draw(st.integers(0, 12), label="ops")):
            kind = data.draw(st.sampled_from(["save", "save", "save", "cut", "snap", "reopen"]))
            if kind == "save":
                _, hs, ents = data.draw(save_op(len(model.entries)))
                synced = bool(ents) or (
                    hs is not None
                    and not hs.is_empty()
                    and (hs.term, hs.vote) != (model.state.term, model.state.vote)
                )
                tail = w.tail_path
                w.save(hs, ents)
                recs = _records(hs, ents)
                for r in recs:
                    model.apply(r)
                pending += recs
                if synced or w.tail_path != tail:  # a cut syncs everything
                    durable, pending = model.copy(), []
            elif kind == "cut":
                w._cut()
                durable, pending = model.copy(), []
            elif kind == "snap" and model.entries:
                idx = data.draw(st.integers(1, len(model.entries)))
                w.save_snapshot(SnapshotRecord(idx, model.entries[idx - 1].term))
                durable, pending = model.copy(), []
            elif kind == "reopen":
                w.close()
                w, (meta, hs, got) = _open(d, seg, pre)
                assert meta == b"meta" and (tuple(got), hs) == model.key()
                durable, pending = model.copy(), []
        # the final save, during which the machine crashes
        tail_before = w.tail_path
        assert w._pw is not None
        lo = w._pw.offset  # everything before this offset in the tail is synced
        _, hs, ents = data.draw(save_op(len(model.entries), 1, 12, (100, 700)), label="final save")
        w.save(hs, ents)
        recs = _records(hs, ents)
        pending += recs
        cut = w.tail_path != tail_before
        hi = w._pw.end if not cut else lo
        w._failed = RuntimeError("crashed")  # the process dies: no flush, no sync at close
        w.close()
    except BaseException:
        w._failed = w._failed or RuntimeError("test failed")
        w.close()
        raise

    if cut:  # the save ended in a cut, which syncs everything: nothing can be lost
        durable, pending = model_after(durable, pending), []
        damage = "none"
    else:
        damage = data.draw(st.sampled_from(["zero", "zero-record", "truncate", "garbage", "none"]), "damage")
    last = segments(d)[-1]
    if tail_before is not None and not cut:
        assert str(last) == tail_before
    if damage == "truncate":
        os.truncate(last, data.draw(st.integers(lo, hi), label="truncate at"))
    elif damage == "zero":
        first = data.draw(st.integers(lo // SECTOR_SIZE_BYTES, max(lo, hi - 1) // SECTOR_SIZE_BYTES))
        count = data.draw(st.integers(1, 3))
        a = max(lo, first * SECTOR_SIZE_BYTES)
        b = min(hi, (first + count) * SECTOR_SIZE_BYTES)
        if b > a:
            with open(last, "r+b") as f:
                f.seek(a)
                f.write(b"\0" * (b - a))
    elif damage == "zero-record":  # etcd's TestOpenOnTornWrite: one whole record lost
        a, b = data.draw(st.sampled_from(_frames(last, lo, hi)), label="frame")
        with open(last, "r+b") as f:
            f.seek(a)
            f.write(b"\0" * (b - a))
    elif damage == "garbage":
        rnd = random.Random(data.draw(st.integers(0, 2**32), label="garbage seed"))
        with open(last, "r+b") as f:
            f.seek(hi)
            f.write(rnd.randbytes(data.draw(st.integers(8, 3000))))

    allowed = {durable.key()}
    m = durable.copy()
    for r in pending:
        m.apply(r)
        allowed.add(m.key())
    event(f"damage={damage}")
    try:
        w, (meta, hs2, got) = _open(d, seg, pre)
    except UnexpectedEOFError:
        event("repaired")
        assert repair(str(d))
        w, (meta, hs2, got) = _open(d, seg, pre)
    try:
        assert meta == b"meta"
        assert (tuple(got), hs2) in allowed, (damage, lo, hi)
        # of any length, so they sometimes end among stale bytes behind the damage
        n, size = data.draw(st.integers(1, 6), "appends"), data.draw(st.integers(1, 400), "size")
        more = [Entry(len(got) + 1 + k, 9, (b"after-crash-%d:" % k).ljust(size, b"a"))
                for k in range(n)]
        w.save(HardState(9, 1, 0), more)
    finally:
        w.close()
    w, (_, hs3, final) = _open(d, seg, pre)
    w.close()
    assert final == got + more and hs3 == HardState(9, 1, 0)


def _frames(path: Path, lo: int, hi: int) -> list[tuple[int, int]]:
    raw = path.read_bytes()
    out = []
    off = lo
    while off < hi:
        n, pad = decode_frame_size(int.from_bytes(raw[off : off + 8], "little"))
        out.append((off, off + 8 + n + pad))
        off += 8 + n + pad
    return out


def model_after(m: Model, recs: list[Rec]) -> Model:
    out = m.copy()
    for r in recs:
        out.apply(r)
    return out
