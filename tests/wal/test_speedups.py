"""The optional C accelerator ``wal._speedups`` against the pure-Python reference.

``wal._speedups`` must write exactly the bytes of ``framing._encode_fixed`` and refuse
(ValueError) every batch it refuses, so the encoder can fall back. Tests of the C module
are skipped when it is not built; ``test_accelerator_built`` then fails, unless
``RAFTNODE_WAL_PURE_PYTHON=1`` says the pure-Python path is wanted.
"""

from __future__ import annotations

import array
import os
import random
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import crc32c
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wal import WAL, Entry, HardState
from wal import framing as fr
from wal.framing import Encoder, _encode_fixed, _Unfit

try:
    from wal import _speedups
except ImportError:
    _speedups = None

PURE = os.environ.get("RAFTNODE_WAL_PURE_PYTHON") == "1"
needs_c = pytest.mark.skipif(
    _speedups is None,
    reason="wal._speedups is not built (no C compiler at install?); "
    "test_accelerator_built reports it",
)
U32 = 2**32 - 1


def _data(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _reference(ents: list[Entry], crc: int) -> tuple[bytes, int, int]:
    parts, crc, last = _encode_fixed(ents, crc)
    return b"".join(parts), crc, last


def test_accelerator_built() -> None:
    """``make test`` builds the extension: a missing build must be loud, not just slow."""
    if PURE:
        assert not fr.ACCELERATED
        pytest.skip("RAFTNODE_WAL_PURE_PYTHON=1: the pure-Python path is wanted")
    import wal._speedups  # noqa: F401  (raises ImportError when not built)

    assert fr.ACCELERATED


def test_pure_python_switch_is_read_at_import() -> None:
    code = "import wal.framing as f; print(f.ACCELERATED, f._speedups is None)"
    env = {**os.environ, "RAFTNODE_WAL_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["False", "True"]


# ---- crc32c ---------------------------------------------------------------------------


@needs_c
def test_crc32c_known_values_and_convention() -> None:
    for f in (_speedups.crc32c, _speedups._crc32c_software):
        assert f(b"") == 0 == crc32c.crc32c(b"")
        assert f(b"123456789") == 0xE3069283
        assert f(b"", 0x1234) == 0x1234
        assert f(b"b", f(b"a")) == f(b"ab")
        assert f(data=b"x", value=5) == crc32c.crc32c(b"x", 5)
        # the value is taken modulo 2**32, like the package's
        for v in (2**32, 2**40 + 7, -1, True):
            assert f(b"ab", v) == crc32c.crc32c(b"ab", v)
    assert isinstance(_speedups.HARDWARE_CRC, bool)


@needs_c
def test_crc32c_accepts_buffers_and_rejects_the_rest() -> None:
    raw = _data(1, 1000)
    want = crc32c.crc32c(raw)
    for buf in (bytearray(raw), memoryview(raw), array.array("B", raw)):
        assert _speedups.crc32c(buf) == want
    assert _speedups.crc32c(memoryview(raw)[3:]) == crc32c.crc32c(raw[3:])
    with pytest.raises(TypeError):
        _speedups.crc32c("text")
    with pytest.raises(TypeError):
        _speedups.crc32c(b"x", 1.5)
    with pytest.raises(BufferError):
        _speedups.crc32c(memoryview(raw)[::2])


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64), st.integers(0, 100_000), st.integers(0, 15),
       st.integers(0, U32))
def test_crc32c_matches_package(seed: int, size: int, offset: int, value: int) -> None:
    raw = _data(seed, size + offset)
    view = memoryview(raw)[offset:]  # every alignment of the start
    want = crc32c.crc32c(view, value)
    assert _speedups.crc32c(view, value) == want
    assert _speedups._crc32c_software(view, value) == want
    cut = size // 3
    assert _speedups.crc32c(view[cut:], _speedups.crc32c(view[:cut], value)) == want


@needs_c
@given(st.binary(max_size=64), st.integers(0, U32))
def test_crc32c_small_inputs(data: bytes, value: int) -> None:
    want = crc32c.crc32c(data, value)
    assert _speedups.crc32c(data, value) == want == _speedups._crc32c_software(data, value)


# ---- encode_fixed ----------------------------------------------------------------------

_lengths = st.one_of(st.integers(0, 3000), st.sampled_from([0, 1023, 1024, 65535, 65536, 70000]))


@st.composite
def batches(draw: st.DrawFn) -> list[Entry]:
    lens = draw(st.lists(_lengths, min_size=1, max_size=50))
    n = len(lens)
    start = draw(st.one_of(st.just(0), st.just(U32 - n + 1), st.integers(0, U32 - n + 1)))
    seed = draw(st.integers(0, 2**32))
    return [
        Entry(
            start + i,
            draw(st.one_of(st.just(0), st.just(U32), st.integers(0, U32))),
            _data(seed + i, dl),
            draw(st.integers(0, 255)),
        )
        for i, dl in enumerate(lens)
    ]


@needs_c
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.integers(0, U32))
def test_encode_fixed_matches_reference(ents: list[Entry], crc: int) -> None:
    got = _speedups.encode_fixed(ents, crc)
    assert type(got[0]) is bytes
    assert got == _reference(ents, crc)
    assert _speedups.encode_fixed(tuple(ents), crc) == got  # any sequence


@needs_c
def test_encode_fixed_index_edges() -> None:
    one = [Entry(U32, U32, b"x", 255)]
    assert _speedups.encode_fixed(one, 0) == _reference(one, 0)
    assert _speedups.encode_fixed(one, 0)[2] == U32
    two = [Entry(U32, 1, b""), Entry(U32 + 1, 1, b"")]
    with pytest.raises(ValueError):
        _speedups.encode_fixed(two, 0)
    with pytest.raises(ValueError):
        _speedups.encode_fixed([], 0)


class _Bytes(bytes):
    pass


# Every batch _encode_fixed refuses: the C path must raise ValueError for each.
REFUSED: dict[str, list[Any]] = {
    "bytearray data": [Entry(1, 1, bytearray(b"x"))],
    "memoryview data": [Entry(1, 1, memoryview(b"x"))],
    "str data": [Entry(1, 1, "x")],
    "bytes subclass": [Entry(1, 1, _Bytes(b"x"))],
    "None data late": [Entry(1, 1, b"a"), Entry(2, 1, None)],
    "gap": [Entry(1, 1, b"a"), Entry(3, 1, b"b")],
    "duplicate": [Entry(1, 1, b"a"), Entry(1, 1, b"b")],
    "backwards": [Entry(5, 1, b"a"), Entry(4, 1, b"b")],
    "index 2**32": [Entry(2**32, 1, b"a")],
    "index 2**64": [Entry(2**64, 1, b"a")],
    "term 2**32": [Entry(1, 2**32, b"a")],
    "term 2**70": [Entry(1, 2**70, b"a")],
    "type 256": [Entry(1, 1, b"a", 256)],
    "negative index": [Entry(-1, 1, b"a")],
    "negative term": [Entry(1, -1, b"a")],
    "negative type": [Entry(1, 1, b"a", -1)],
    "huge negative term": [Entry(1, -(2**70), b"a")],
    "float index": [Entry(1.0, 1, b"a")],
    "str term": [Entry(1, "1", b"a")],
    "None type": [Entry(1, 1, b"a", None)],
    "bad entry after good ones": [Entry(i, 1, b"z" * i) for i in range(1, 40)]
    + [Entry(40, 2**32, b"")],
    "big entry then a gap": [Entry(1, 1, b"b" * 70_000), Entry(3, 1, b"")],
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_reference_refuses(name: str) -> None:
    with pytest.raises((struct.error, _Unfit)):
        _encode_fixed(REFUSED[name], 0)


@needs_c
@pytest.mark.parametrize("name", list(REFUSED))
def test_encode_fixed_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        _speedups.encode_fixed(REFUSED[name], 0x1234)


def _encode(ents: Any, crc: int) -> tuple[str, Any]:
    """What an Encoder does with the batch: ("ok", (bytes, crc, last)) or ("err", type)."""
    enc = Encoder(crc)
    out: list[Any] = []
    try:
        last = enc.encode_entries(ents, out)
    except Exception as err:
        # nothing written, chain untouched
        assert out == [] and enc.crc == crc
        return "err", type(err)
    return "ok", (b"".join(out), enc.crc, last)


@needs_c
@pytest.mark.parametrize("name", list(REFUSED))
def test_encoder_falls_back_like_pure_python(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fr, "_speedups", _speedups)
    fast = _encode(REFUSED[name], 0x1234)
    monkeypatch.setattr(fr, "_speedups", None)
    assert fast == _encode(REFUSED[name], 0x1234)


@needs_c
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.integers(0, U32))
def test_encoder_same_bytes_both_ways(ents: list[Entry], crc: int) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fr, "_speedups", _speedups)
        fast = _encode(ents, crc)
        mp.setattr(fr, "_speedups", None)
        slow = _encode(ents, crc)
    assert fast[0] == "ok" and fast == slow


@needs_c
def test_bad_arguments_raise_not_crash() -> None:
    with pytest.raises(TypeError):
        _speedups.encode_fixed(5, 0)
    with pytest.raises(TypeError):
        _speedups.encode_fixed(None, 0)
    with pytest.raises(TypeError):
        _speedups.encode_fixed([Entry(1, 1, b"")], "0")
    with pytest.raises(TypeError):
        _speedups.encode_fixed([Entry(1, 1, b"")])
    with pytest.raises(AttributeError):
        _speedups.encode_fixed([object()], 0)

    class NoType:
        index, term, data = 1, 1, b""

    with pytest.raises(AttributeError):
        _speedups.encode_fixed([NoType()], 0)

    class Exploding:
        index, term, type = 1, 1, 0

        @property
        def data(self) -> bytes:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _speedups.encode_fixed([Entry(0, 1, b"ok"), Exploding()], 0)

    class BadIndex:
        def __index__(self) -> int:
            raise KeyError("inner")

    with pytest.raises(KeyError):
        _speedups.encode_fixed([Entry(1, BadIndex(), b"")], 0)


@needs_c
def test_duck_typed_entries_and_iterables() -> None:
    class Plain:
        def __init__(self, i: int) -> None:
            self.index, self.term, self.type, self.data = i, 7, 1, b"p" * i

    duck = [Plain(i) for i in range(3, 9)]
    ents = [Entry(p.index, p.term, p.data, p.type) for p in duck]
    assert _speedups.encode_fixed(duck, 9) == _reference(ents, 9)
    # PySequence_Fast takes any iterable
    assert _speedups.encode_fixed(iter(ents), 9) == _reference(ents, 9)


class _SubEntry(Entry):  # no __slots__: instances get a __dict__, the slots stay
    pass


class _GetattrEntry:
    __slots__ = ("data", "index", "term", "type")

    def __init__(self, i: int) -> None:
        self.index, self.term, self.type, self.data = i, 4, 2, b"g" * i

    def __getattr__(self, name: str) -> Any:  # not generic attribute access: no fast path
        raise AttributeError(name)


@needs_c
def test_entry_types_read_like_attribute_access() -> None:
    """Slots are read directly only where that gives what ``e.attr`` gives."""
    base = [Entry(10 + i, 5, _data(i, 10 * i), i % 2) for i in range(6)]
    batches: list[list[Any]] = [
        [_SubEntry(e.index, e.term, e.data, e.type) for e in base],
        [_GetattrEntry(i) for i in range(1, 7)],
        [*base[:3], _SubEntry(13, 5, b"mixed", 0), *base[4:]],  # a second type mid-batch
        [_GetattrEntry(10), *base[1:]],
    ]
    for batch in batches:
        assert _speedups.encode_fixed(batch, 3) == _reference(batch, 3)
    unset = _GetattrEntry(11)
    del unset.term
    with pytest.raises(AttributeError):
        _speedups.encode_fixed([*base[:1], unset], 3)
    with pytest.raises(AttributeError):
        _reference([*base[:1], unset], 3)


def _sneaky_batch() -> list[Any]:
    """Three entries of a fresh slots class; reading the first one's type replaces the
    class's ``term`` by a property, as Python code run during a batch may."""

    @dataclass(frozen=True, slots=True)
    class E:
        index: int
        term: int
        data: bytes
        type: Any

    class Sneaky:
        def __index__(self) -> int:
            E.term = property(lambda self: 77)
            return 1

    return [E(1, 2, b"a", Sneaky()), E(2, 3, b"b", 0), E(3, 4, b"c", 0)]


@needs_c
def test_class_changed_mid_batch_is_seen() -> None:
    """After Python code ran mid-batch, entries are read through the changed class."""
    want = _reference([Entry(1, 2, b"a", 1), Entry(2, 77, b"b"), Entry(3, 77, b"c")], 0)
    assert _reference(_sneaky_batch(), 0) == want
    assert _speedups.encode_fixed(_sneaky_batch(), 0) == want


@needs_c
def test_entries_list_mutated_mid_batch() -> None:
    ents: list[Any] = []

    class Clearing:
        index, term, type = 1, 1, 0

        @property
        def data(self) -> bytes:
            ents.clear()
            return b"x"

    ents += [Clearing(), Entry(2, 1, b"y"), Entry(3, 1, b"z")]
    with pytest.raises(RuntimeError):
        _speedups.encode_fixed(ents, 0)


@needs_c
def test_no_reference_leaks() -> None:
    ents = [Entry(100 + i, 3, _data(i, dl), i % 3) for i, dl in enumerate((0, 5, 256, 1500, 70_000))]
    refused = [*ents[:3], Entry(999, 3, b"x")]
    objs: list[object] = [ents, refused, *ents, *(e.data for e in ents), refused[-1]]
    before = [sys.getrefcount(o) for o in objs]
    want = _speedups.encode_fixed(ents, 5)
    for _ in range(100_000):
        _speedups.encode_fixed(ents, 5)
    for _ in range(20_000):
        try:
            _speedups.encode_fixed(refused, 5)
        except ValueError:
            pass
    assert _speedups.encode_fixed(ents, 5) == want
    del want
    assert [sys.getrefcount(o) for o in objs] == before


# ---- a real WAL ------------------------------------------------------------------------


def _write_wal(d: Path) -> list[Entry]:
    ents: list[Entry] = []
    # small segments: the chain also crosses cuts (crc records)
    w = WAL.create(str(d), b"speedups", segment_size=256 * 1024, preallocate=False)
    index = 0
    rng = random.Random(7)
    for batch in (1, 10, 100, 1000, 3):
        sizes = [rng.choice((0, 1, 256, 1023, 1024, 4096, 4096, 65536)) for _ in range(batch)]
        new = [Entry(index + k + 1, 2, _data(index + k, s), k % 2) for k, s in enumerate(sizes)]
        index += batch
        w.save(HardState(2, 1, index), new)
        ents += new
    w.close()
    return ents


@needs_c
def test_wal_written_by_accelerator_reads_back(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fr, "_speedups", _speedups)
    ents = _write_wal(tmp_path / "fast")
    with WAL.open_for_read(str(tmp_path / "fast")) as r:
        meta, state, got = r.read_all()
    assert meta == b"speedups" and state == HardState(2, 1, len(ents)) and got == ents
    # and the files are the very bytes the pure-Python path writes
    monkeypatch.setattr(fr, "_speedups", None)
    _write_wal(tmp_path / "slow")
    names = sorted(n for n in os.listdir(tmp_path / "fast") if n.endswith(".wal"))
    assert len(names) >= 3
    assert names == sorted(n for n in os.listdir(tmp_path / "slow") if n.endswith(".wal"))
    for n in names:
        assert (tmp_path / "fast" / n).read_bytes() == (tmp_path / "slow" / n).read_bytes(), n
