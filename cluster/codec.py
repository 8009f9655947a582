"""Wire encoding of the etcd JSON gateway: base64 bytes, int64 as decimal strings."""

from __future__ import annotations

import base64
from typing import Any

Bytesish = bytes | str


def to_bytes(value: Bytesish) -> bytes:
    """Keys and values may be given as str (UTF-8) or bytes; the wire carries bytes."""
    return value.encode() if isinstance(value, str) else bytes(value)


def b64(value: Bytesish) -> str:
    return base64.b64encode(to_bytes(value)).decode("ascii")


def unb64(value: Any) -> bytes:
    """Decode a base64 field; an absent field (zero value omitted) is empty bytes."""
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise TypeError(f"expected a base64 string, got {type(value).__name__}")
    return base64.b64decode(value, validate=True)


def num(value: Any) -> int:
    """Decode an int64/uint64 field (a decimal string, or absent for zero)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise TypeError("expected an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 10)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def prefix_end(prefix: Bytesish) -> bytes:
    """The range_end that selects every key starting with prefix (etcd's GetPrefixRangeEnd).

    Trailing 0xff bytes are dropped before incrementing; an all-0xff (or empty) prefix has
    no upper bound, which etcd spells as a single NUL byte.
    """
    end = bytearray(to_bytes(prefix))
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


def put_opt(body: dict[str, Any], name: str, value: Any) -> None:
    """Add a field only when it is not the zero value (the gateway omits zero values too)."""
    if value:
        body[name] = value
