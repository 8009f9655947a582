"""Files written before entry payloads became fixed-width still read, and take appends.

``OLD_SEGMENT`` is a segment written by the encoder of commit b1d8027 (msgpack's minimal
encoding for every entry payload), with ``preallocate=False`` so that it is short::

    w = WAL.create(d, b"pre-fixed-width", preallocate=False)
    w.save(HardState(1, 1, 0), [Entry(1, 1, _data(1, 0)), Entry(2, 1, _data(2, 5)),
                                Entry(3, 1, _data(3, 300))])
    w.save(HardState(2, 1, 2), [Entry(4, 2, _data(4, 1100)), Entry(5, 2, _data(5, 40), 1)])
    w.save_snapshot(SnapshotRecord(2, 1))
    w.save(None, [Entry(6, 2, _data(6, 200), 2)])
    w.close()
"""

from __future__ import annotations

import base64
from pathlib import Path

import msgpack

from tests.wal.helpers import read, reopen
from wal import WAL, Entry, HardState, SnapshotRecord, verify
from wal.decoder import Decoder
from wal.framing import ENTRY
from wal.segment import wal_name

OLD_SEGMENT = base64.b64decode(
    "BQAAAAAAAIMAAAAABAAAABQAAAAAAACEh6mbmgFwcmUtZml4ZWQtd2lkdGgAAAAACAAAAAAAAAByyxkRBZIAAAsA"
    "AAAAAACFeLoMHgKUAQEAxAAAAAAAABAAAAAAAAAAUhpofAKUAgEAxAUODxAREjgBAAAAAAAAV5IAhwKUAwEAxQEs"
    "FRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVW"
    "V1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeY"
    "mZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna"
    "29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhsc"
    "HR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9ACQAAAAAAAIeLaFT8A5MBAQAAAAAAAAAAWAQAAAAA"
    "AADGrUpqApQEAgDFBEwcHR4fICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5P"
    "UFFSU1RVVldYWVpbXF1eX2BhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4SFhoeIiYqLjI2Oj5CR"
    "kpOUlZaXmJmam5ydnp+goaKjpKWmp6ipqqusra6vsLGys7S1tre4ubq7vL2+v8DBwsPExcbHyMnKy8zNzs/Q0dLT"
    "1NXW19jZ2tvc3d7f4OHi4+Tl5ufo6err7O3u7/Dx8vP09fb3+Pn6+/z9/v8AAQIDBAUGBwgJCgsMDQ4PEBESExQV"
    "FhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZX"
    "WFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkZKTlJWWl5iZ"
    "mpucnZ6foKGio6SlpqeoqaqrrK2ur7CxsrO0tba3uLm6u7y9vr/AwcLDxMXGx8jJysvMzc7P0NHS09TV1tfY2drb"
    "3N3e3+Dh4uPk5ebn6Onq6+zt7u/w8fLz9PX29/j5+vv8/f7/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
    "Hh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5f"
    "YGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6Ch"
    "oqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj"
    "5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/wABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICEiIyQl"
    "JicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZn"
    "aGlqa2xtbm9wcXJzdHV2d3h5ent8fX5/gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp+goaKjpKWmp6ip"
    "qqusra6vsLGys7S1tre4ubq7vL2+v8DBwsPExcbHyMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5ufo6err"
    "7O3u7/Dx8vP09fb3+Pn6+/z9/v8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywt"
    "Li8wMTIzNDU2Nzg5Ojs8PT4/QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZzMAAAAAAACF"
    "QPk2kgKUBQIBxCgjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKAAAAAAAJAAAAAAAAh0HE"
    "Vf8DkwIBAgAAAAAAAAAIAAAAAAAAAIH/kXYFkgIB0wAAAAAAAIXhPQV2ApQGAgLEyCorLC0uLzAxMjM0NTY3ODk6"
    "Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eX2BhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ent8"
    "fX5/gIGCg4SFhoeIiYqLjI2Oj5CRkpOUlZaXmJmam5ydnp+goaKjpKWmp6ipqqusra6vsLGys7S1tre4ubq7vL2+"
    "v8DBwsPExcbHyMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl5ufo6err7O3u7/DxAAAAAAA="
)


def _data(i: int, n: int) -> bytes:
    return bytes((i * 7 + k) & 0xFF for k in range(n))


OLD_ENTRIES = [
    Entry(1, 1, _data(1, 0)),
    Entry(2, 1, _data(2, 5)),
    Entry(3, 1, _data(3, 300)),
    Entry(4, 2, _data(4, 1100)),
    Entry(5, 2, _data(5, 40), 1),
    Entry(6, 2, _data(6, 200), 2),
]


def _install(wdir: Path) -> Path:
    wdir.mkdir(parents=True)
    seg = wdir / wal_name(0, 0)
    seg.write_bytes(OLD_SEGMENT)
    return seg


def test_the_fixture_holds_the_old_encoding(wdir: Path) -> None:
    seg = _install(wdir)
    payloads = [data for rtype, data, _ in Decoder([str(seg)]).records() if rtype == ENTRY]
    assert payloads == [msgpack.packb((e.index, e.term, e.type, e.data)) for e in OLD_ENTRIES]


def test_old_segment_reads_then_takes_fixed_width_appends(wdir: Path) -> None:
    _install(wdir)
    meta, hs, got = read(wdir)
    assert meta == b"pre-fixed-width" and hs == HardState(2, 1, 2) and got == OLD_ENTRIES
    w, (_, _, got) = reopen(wdir)
    assert got == OLD_ENTRIES
    new = [Entry(i, 3, _data(i, (i * 97) % 1500), i % 3) for i in range(7, 60)]
    w.save(HardState(3, 2, 6), new[:40])
    w.save(None, new[40:])
    w.close()
    assert read(wdir)[1:] == (HardState(3, 2, 6), OLD_ENTRIES + new)
    assert verify(str(wdir)) == HardState(3, 2, 6)
    # an old entry overwritten by a new one at the same index (raft's log truncation)
    w, _ = reopen(wdir)
    w.save(HardState(4, 2, 6), [Entry(5, 4, b"over")])
    w.close()
    assert read(wdir)[2] == [*OLD_ENTRIES[:4], Entry(5, 4, b"over")]


def test_old_segment_opened_at_its_snapshot(wdir: Path) -> None:
    _install(wdir)
    with WAL.open_for_read(str(wdir), SnapshotRecord(2, 1)) as w:
        _, hs, got = w.read_all()
    assert hs == HardState(2, 1, 2) and got == OLD_ENTRIES[2:]
