"""Record framing and payload codecs: etcd's frame layout with msgpack payloads.

A frame is an 8-byte little-endian length word, the record, then 0-7 zero pad bytes so
every frame starts 8-byte aligned (the length word can then never be torn). The low 56
bits of the word are the record length; when padding is present the top byte is
``0x80 | pad``. A record is ``crc (u32 LE) | type (u8) | data``. The CRC is CRC-32C,
chained over the data of every record since the chain began, like etcd's; unlike etcd,
the record type is folded in too (the running value is XORed with the type before the
data is hashed), so a flipped type byte is caught as corruption at no extra cost. A CRC
record carries the running CRC instead and does not advance the chain.

Entry payloads are msgpack arrays ``[index, term, type, data]``, written with fixed-width
ints (:data:`ENTRY_PREFIX`) because one struct packs them much faster than msgpack's
generic packer; readers take any msgpack encoding of the tuple (older files hold
msgpack's minimal one).

Entry frames come from the optional C module ``wal._speedups`` when it is built
(:data:`ACCELERATED`); it writes the same bytes as :func:`_encode_fixed`, the pure-Python
path and reference, which is used without it or with ``RAFTNODE_WAL_PURE_PYTHON=1`` in the
environment at import.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import Protocol

import crc32c
import msgpack

from wal.records import Entry, HardState, SnapshotRecord


class _Accelerator(Protocol):
    """What the encoder uses of ``wal._speedups`` (an Optional module, typed as a protocol)."""

    def encode_fixed(self, entries: Sequence[Entry], crc: int, /) -> tuple[bytes, int, int]: ...


def _load_accelerator() -> _Accelerator | None:
    if os.environ.get("RAFTNODE_WAL_PURE_PYTHON") == "1":
        return None
    try:
        from wal import _speedups
    except ImportError:  # not built (no C compiler at install): the pure-Python path
        return None
    return _speedups


_speedups = _load_accelerator()
#: Whether entry frames come from the C accelerator (``wal._speedups``); read at import.
ACCELERATED = _speedups is not None

FRAME_SIZE_BYTES = 8
SECTOR_SIZE_BYTES = 512
PAGE_SIZE_BYTES = 8 * SECTOR_SIZE_BYTES

LENGTH_MASK = (1 << 56) - 1
MAX_UINT64 = (1 << 64) - 1


class RecordType(IntEnum):
    METADATA = 1
    ENTRY = 2
    STATE = 3
    CRC = 4
    SNAPSHOT = 5


METADATA = int(RecordType.METADATA)
ENTRY = int(RecordType.ENTRY)
STATE = int(RecordType.STATE)
CRC = int(RecordType.CRC)
SNAPSHOT = int(RecordType.SNAPSHOT)

RECORD_HEADER = struct.Struct("<IB")  # crc, type
RECORD_HEADER_SIZE = RECORD_HEADER.size
_WORD = struct.Struct("<Q")
_FRAME_HEAD = struct.Struct("<QIB")  # length word + record header, packed in one call
# Frame length words for every pad value, precomputed: word = length | PAD_FLAG[pad].
_PAD_FLAG = [0] + [(0x80 | p) << 56 for p in range(1, 8)]
_PADDING = [b"\x00" * p for p in range(8)]
#: What an encoder hands to the page writer: frames, runs of frames, or entry data.
Chunk = bytes | bytearray | memoryview


def encode_frame_size(record_bytes: int) -> tuple[int, int]:
    """Length word and pad byte count for a record of ``record_bytes``."""
    pad = -record_bytes & 7
    return record_bytes | _PAD_FLAG[pad], pad


def decode_frame_size(word: int) -> tuple[int, int]:
    """Record length and pad byte count from a length word (legacy unpadded words too)."""
    pad = (word >> 56) & 0x7 if word >> 63 else 0
    return word & LENGTH_MASK, pad


def frame(rtype: int, crc: int, data: bytes) -> bytes:
    """One complete frame: length word, record, padding."""
    n = RECORD_HEADER_SIZE + len(data)
    pad = -n & 7
    return b"".join(
        (_WORD.pack(n | _PAD_FLAG[pad]), RECORD_HEADER.pack(crc, rtype), data, _PADDING[pad])
    )


class Encoder:
    """Turns records into frames while keeping the running CRC."""

    __slots__ = ("_pack", "crc")

    def __init__(self, prev_crc: int = 0) -> None:
        self.crc = prev_crc
        # one Packer per encoder: msgpack.packb builds a new Packer on every call
        self._pack = msgpack.Packer().pack

    def encode(self, rtype: int, data: bytes) -> bytes:
        """Frame one record and advance the chain (a CRC record never advances it)."""
        if rtype == CRC:
            return frame(CRC, self.crc, b"")
        self.crc = crc32c.crc32c(data, self.crc ^ rtype)
        return frame(rtype, self.crc, data)

    def pack_state(self, st: HardState) -> bytes:
        """:func:`pack_state` with this encoder's Packer (``msgpack.packb`` builds a new
        Packer per call, which costs more than the packing; a save packs one state)."""
        try:
            data: bytes = self._pack((st.term, st.vote, st.commit))
        except (OverflowError, TypeError, ValueError) as err:
            raise ValueError(f"cannot encode hard state {st}: {err}") from None
        return data

    def encode_entries(self, entries: Sequence[Entry], out: list[Chunk]) -> int:
        """Append the frames of ``entries`` to ``out``; return the index of the last one.

        Per-entry Python work is what a big save costs (this VM's fdatasync takes only
        ~0.2 ms), so the usual entry takes a lean path: ``wal._speedups.encode_fixed``
        (C, all frames in one bytes object) or, without it, :func:`_encode_fixed`, where
        one precompiled struct packs the payload (see :data:`ENTRY_PREFIX`) and another
        the frame. Both write the same bytes. Anything that path does not take (data that is not bytes, a gap, an index or term of 2^32
        or more, a type above 255, a negative value) makes the whole batch go through
        :meth:`encode_entries_msgpack`, which names the bad entry or writes msgpack's own
        minimal encoding. Either way the running CRC and ``out`` only change once every
        entry encoded: a bad entry raises before anything is written.
        """
        if not entries:
            return -1
        if _speedups is not None:
            # the same frames as _encode_fixed, built in C as one bytes object
            try:
                buf, crc, last = _speedups.encode_fixed(entries, self.crc)
            except ValueError:
                return self.encode_entries_msgpack(entries, out)
            out.append(buf)
            self.crc = crc
            return last
        try:
            parts, crc, last = _encode_fixed(entries, self.crc)
        except (struct.error, _Unfit):
            return self.encode_entries_msgpack(entries, out)
        out += parts
        self.crc = crc
        return last

    def encode_entries_msgpack(self, entries: Iterable[Entry], out: list[Chunk]) -> int:
        """Like :meth:`encode_entries`, with payloads packed by msgpack, checking each entry.

        Frames of small entries are packed back to back into one bytearray; the data of a
        big entry is appended as its own part, never copied.
        """
        crc = self.crc
        head = _FRAME_HEAD.pack
        packb = self._pack
        c32 = crc32c.crc32c
        pads = _PADDING
        flags = _PAD_FLAG
        run = bytearray()
        parts: list[Chunk] = []  # handed to ``out`` only once every entry encoded
        index = -1
        for e in entries:
            data = e.data
            if type(data) is not bytes:
                raise TypeError(f"entry {e.index}: data must be bytes, not {type(data).__name__}")
            if index >= 0 and e.index != index + 1:
                raise ValueError(f"entries not contiguous: {e.index} follows {index}")
            index = e.index
            if e.term < 0 or e.type < 0:
                raise ValueError(f"entry {index}: negative term or type")
            dl = len(data)
            try:
                if dl < _BIG_ENTRY_BYTES:
                    payload: bytes = packb((index, e.term, e.type, data))
                else:  # the same msgpack bytes, without copying ``data`` into them
                    payload = _big_prefix(packb((index, e.term, e.type)), dl)
            except (OverflowError, TypeError, ValueError) as err:
                raise ValueError(f"entry {index}: cannot encode: {err}") from None
            if dl < _BIG_ENTRY_BYTES:
                crc = c32(payload, crc ^ ENTRY)
                n = 5 + len(payload)
                pad = -n & 7
                run += head(n | flags[pad], crc, ENTRY)
                run += payload
                if pad:
                    run += pads[pad]
            else:
                crc = c32(data, c32(payload, crc ^ ENTRY))
                n = 5 + len(payload) + dl
                pad = -n & 7
                run += head(n | flags[pad], crc, ENTRY)
                run += payload
                parts.append(run)
                parts.append(data)
                run = bytearray(pads[pad])
        if run:
            parts.append(run)
        out += parts
        self.crc = crc
        return index


class _Unfit(Exception):
    """An entry the fixed-width path does not take; the msgpack path will."""


_BIG_ENTRY_BYTES = 1024

#: The msgpack header of an entry payload ``[index, term, type, data]`` as written by
#: :meth:`Encoder.encode_entries`: fixarray(4) and a uint32 marker (``0x94CE``), the index
#: (uint32), ``0xCE`` and the term (uint32), ``0xCC`` and the type (uint8), then the bin16
#: header (``0xC5`` and the data length); the data follows. Fixed widths let one
#: precompiled struct pack it (msgpack's generic packer costs about three times as much
#: per entry) and are still plain msgpack: ``msgpack.unpackb`` and the decoder read the
#: same tuple as from msgpack's minimal encoding, which older files hold and which
#: :meth:`Encoder.encode_entries_msgpack` still writes for values that do not fit.
ENTRY_PREFIX = ">HIBIBBBH"
_ENTRY_PREFIX_SIZE = struct.calcsize(ENTRY_PREFIX)  # 16
_PREFIX16 = struct.Struct(ENTRY_PREFIX).pack
_PREFIX32 = struct.Struct(ENTRY_PREFIX[:-2] + "BI").pack  # bin32: data of 64 KiB or more
_FIXARRAY4_UINT32 = 0x94CE
_UINT32 = 0xCE
_UINT8 = 0xCC
_BIN16_MARK = 0xC5
_BIN32_MARK = 0xC6


_Packer = Callable[..., bytes]
#: Per data length below 1 KiB, filled on first use: the payload struct's pack (header +
#: data), the frame struct's pack (length word, crc, type, payload, padding) and the
#: length word's bytes. A list, not a dict: the lookup is once per entry.
_SMALL_FRAMES: list[tuple[_Packer, _Packer, bytes] | None] = [None] * _BIG_ENTRY_BYTES


def _small_frame(dl: int) -> tuple[_Packer, _Packer, bytes]:
    """Build and remember the structs for ``dl`` bytes of data (first entry of that size)."""
    m = _ENTRY_PREFIX_SIZE + dl
    n = RECORD_HEADER_SIZE + m
    pad = -n & 7
    structs = _SMALL_FRAMES[dl] = (
        struct.Struct(f"{ENTRY_PREFIX}{dl}s").pack,
        struct.Struct(f"<8sIB{m}s{pad}x").pack,
        _WORD.pack(n | _PAD_FLAG[pad]),
    )
    return structs


def _encode_fixed(entries: Sequence[Entry], crc: int) -> tuple[list[Chunk], int, int]:
    """Frames of ``entries`` with fixed-width payloads: (parts, running crc, last index).

    Raises _Unfit or struct.error (a value out of its field's range, or no int) for a
    batch this path does not take. Small frames are joined into one part (one iovec for
    ``writev``); a big entry's data is a part of its own, never copied. Everything the
    loop touches is a local: this is the per-entry cost of a save.
    """
    c32 = crc32c.crc32c
    small = _SMALL_FRAMES
    head = _FRAME_HEAD.pack
    prefix16, prefix32 = _PREFIX16, _PREFIX32
    flags, pads = _PAD_FLAG, _PADDING
    et, big, hsize = ENTRY, _BIG_ENTRY_BYTES, RECORD_HEADER_SIZE
    a4, u32, u8, b16, b32 = _FIXARRAY4_UINT32, _UINT32, _UINT8, _BIN16_MARK, _BIN32_MARK
    parts: list[Chunk] = []
    run: list[bytes] = []  # small frames (and a big entry's padding) not yet joined
    app = run.append
    nxt = entries[0].index
    for e in entries:
        data = e.data
        if type(data) is not bytes:
            raise _Unfit
        index = e.index
        if index != nxt:
            raise _Unfit
        nxt = index + 1
        dl = len(data)
        if dl < big:
            structs = small[dl]
            if structs is None:
                structs = _small_frame(dl)
            pay, frm, word = structs
            p = pay(a4, index, u32, e.term, u8, e.type, b16, dl, data)
            crc = c32(p, crc ^ et)
            app(frm(word, crc, et, p))
        else:
            if dl < 0x10000:
                p = prefix16(a4, index, u32, e.term, u8, e.type, b16, dl)
            else:
                p = prefix32(a4, index, u32, e.term, u8, e.type, b32, dl)
            crc = c32(data, c32(p, crc ^ et))
            n = hsize + len(p) + dl
            pad = -n & 7
            app(head(n | flags[pad], crc, et) + p)
            parts.append(b"".join(run))
            parts.append(data)
            run.clear()
            if pad:
                app(pads[pad])
    if run:
        parts.append(b"".join(run))
    return parts, crc, nxt - 1


_BIN16 = struct.Struct(">BH")
_BIN32 = struct.Struct(">BI")


def _big_prefix(head3: bytes, data_len: int) -> bytes:
    """msgpack of ``(index, term, type, data)`` up to the data bytes, from that of the 3-tuple.

    A 3-tuple packs as fixarray ``0x93`` + three ints; the 4-tuple is ``0x94`` + the same
    ints + a bin16/bin32 header (data of 1 KiB or more never uses bin8) + the data.
    """
    assert head3[0] == 0x93
    binh = _BIN16.pack(0xC5, data_len) if data_len < 1 << 16 else _BIN32.pack(0xC6, data_len)
    return b"\x94" + head3[1:] + binh


def pack_state(st: HardState) -> bytes:
    try:
        return msgpack.packb((st.term, st.vote, st.commit))
    except (OverflowError, TypeError, ValueError) as err:
        raise ValueError(f"cannot encode hard state {st}: {err}") from None


def pack_snapshot(snap: SnapshotRecord) -> bytes:
    try:
        return msgpack.packb((snap.index, snap.term))
    except (OverflowError, TypeError, ValueError) as err:
        raise ValueError(f"cannot encode snapshot {snap}: {err}") from None


def unpack_ints(data: bytes, n: int) -> tuple[int, ...]:
    """Decode a msgpack tuple of ``n`` unsigned ints; ValueError if it is anything else."""
    try:
        v = msgpack.unpackb(data, use_list=False)
    except Exception as err:  # msgpack raises a zoo of types on garbage
        raise ValueError(f"bad payload: {err}") from None
    if (
        type(v) is not tuple
        or len(v) != n
        or not all(type(x) is int and 0 <= x <= MAX_UINT64 for x in v)
    ):
        raise ValueError(f"bad payload: expected {n} unsigned ints, got {v!r:.80}")
    return v


def unpack_entry(data: bytes) -> Entry:
    try:
        index, term, etype, payload = msgpack.unpackb(data, use_list=False)
    except Exception as err:
        raise ValueError(f"bad entry payload: {err}") from None
    if type(index) is not int or type(term) is not int or type(etype) is not int:
        raise ValueError("bad entry payload: non-integer index/term/type")
    if type(payload) is not bytes:
        raise ValueError("bad entry payload: data is not bytes")
    return Entry(index, term, payload, etype)


def unpack_state(data: bytes) -> HardState:
    term, vote, commit = unpack_ints(data, 3)
    return HardState(term, vote, commit)


def unpack_snapshot(data: bytes) -> SnapshotRecord:
    index, term = unpack_ints(data, 2)
    return SnapshotRecord(index, term)
