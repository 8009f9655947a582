from collections.abc import Sequence

from _typeshed import ReadableBuffer

from wal.records import Entry

HARDWARE_CRC: bool

def crc32c(data: ReadableBuffer, value: int = 0) -> int: ...
def _crc32c_software(data: ReadableBuffer, value: int = 0) -> int: ...
def encode_fixed(entries: Sequence[Entry], crc: int, /) -> tuple[bytes, int, int]: ...
