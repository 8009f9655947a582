"""The page writer hands only whole, file-aligned pages to the OS until flushed."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from wal.pagewriter import PageWriter


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 9000),
    writes=st.lists(st.lists(st.binary(min_size=0, max_size=3000), max_size=4), max_size=12),
)
def test_page_aligned_until_flush(tmp_path_factory: object, start: int,
                                  writes: list[list[bytes]]) -> None:
    d = Path(str(tmp_path_factory.mktemp("pw")))  # type: ignore[attr-defined]
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.lseek(fd, start, os.SEEK_SET)
        pw = PageWriter(fd, start, page_bytes=512, buffer_bytes=2048)
        expect = b""
        for parts in writes:
            pw.write_parts(parts, sum(map(len, parts)))
            expect += b"".join(parts)
            on_disk = os.fstat(fd).st_size
            assert on_disk == 0 or (on_disk > start and on_disk % 512 == 0)
            assert len(pw.buf) < 2048 + 512
            assert pw.end == start + len(expect)
        pw.flush()
        assert os.pread(fd, len(expect) + 10, start) == expect
        assert pw.end == pw.offset == start + len(expect)
    finally:
        os.close(fd)


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 9000),
    writes=st.lists(
        st.tuples(st.lists(st.binary(min_size=0, max_size=3000), max_size=4), st.booleans()),
        max_size=12,
    ),
)
def test_a_flushing_write_sends_everything_at_once(tmp_path_factory: object, start: int,
                                                   writes: list[tuple[list[bytes], bool]]) -> None:
    """``flush=True`` (a save that syncs next) equals write_parts then flush."""
    d = Path(str(tmp_path_factory.mktemp("pw")))  # type: ignore[attr-defined]
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        os.lseek(fd, start, os.SEEK_SET)
        pw = PageWriter(fd, start, page_bytes=512, buffer_bytes=2048)
        expect = b""
        for parts, flush in writes:
            synced_before = pw.offset
            pw.write_parts(parts, sum(map(len, parts)), flush=flush)
            expect += b"".join(parts)
            assert pw.end == start + len(expect)
            if flush:
                assert not pw.buf and pw.offset == pw.end
                assert os.pread(fd, len(expect), start) == expect
            else:  # only whole pages past what was already out
                assert pw.offset == synced_before or pw.offset % 512 == 0
        pw.flush()
        assert os.pread(fd, len(expect) + 10, start) == expect
    finally:
        os.close(fd)
