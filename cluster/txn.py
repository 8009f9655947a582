"""Building transactions and their operations as gateway JSON (pure: no I/O).

    Txn().when(value("k") == b"v", version("n") > 0)
         .then(put("k", "w"), get("n"))
         .otherwise(delete("k", prefix=True))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Self

from cluster.codec import Bytesish, b64, prefix_end, put_opt, to_bytes

Json = dict[str, Any]

SORT_ORDERS = ("NONE", "ASCEND", "DESCEND")
SORT_TARGETS = ("KEY", "VERSION", "CREATE", "MOD", "VALUE")
_RESULTS = {"==": "EQUAL", ">": "GREATER", "<": "LESS", "!=": "NOT_EQUAL"}
_TARGET_FIELD = {"VERSION": "version", "CREATE": "create_revision", "MOD": "mod_revision",
                 "VALUE": "value", "LEASE": "lease"}


def key_range(key: Bytesish, range_end: Bytesish | None = None, *, prefix: bool = False,
              from_key: bool = False) -> Json:
    """`key` plus the optional `range_end` selecting a prefix, an interval or all keys >= key."""
    if sum((range_end is not None, prefix, from_key)) > 1:
        raise ValueError("range_end, prefix and from_key are mutually exclusive")
    k = to_bytes(key)
    body: Json = {"key": b64(k if k or not (prefix or from_key) else b"\x00")}
    if prefix:
        body["range_end"] = b64(prefix_end(k) if k else b"\x00")
    elif from_key:
        body["range_end"] = b64(b"\x00")
    elif range_end is not None and to_bytes(range_end):
        body["range_end"] = b64(range_end)
    return body


@dataclass(slots=True, frozen=True)
class Op:
    """One request of a txn branch, already in wire form (`{"request_put": {...}}`)."""

    wire: Json


def get(key: Bytesish, range_end: Bytesish | None = None, *, prefix: bool = False,
        from_key: bool = False, revision: int = 0, limit: int = 0, keys_only: bool = False,
        count_only: bool = False, serializable: bool = False, sort_order: str = "NONE",
        sort_target: str = "KEY", min_mod_revision: int = 0, max_mod_revision: int = 0,
        min_create_revision: int = 0, max_create_revision: int = 0) -> Op:
    if sort_order not in SORT_ORDERS or sort_target not in SORT_TARGETS:
        raise ValueError(f"bad sort option {sort_order}/{sort_target}")
    if limit < 0 or revision < 0:
        raise ValueError("limit and revision must be >= 0")
    body = key_range(key, range_end, prefix=prefix, from_key=from_key)
    for name, v in (("revision", revision), ("limit", limit), ("keys_only", keys_only),
                    ("count_only", count_only), ("serializable", serializable),
                    ("min_mod_revision", min_mod_revision),
                    ("max_mod_revision", max_mod_revision),
                    ("min_create_revision", min_create_revision),
                    ("max_create_revision", max_create_revision)):
        put_opt(body, name, v)
    if sort_order != "NONE":
        body["sort_order"] = sort_order
    if sort_target != "KEY":
        body["sort_target"] = sort_target
    return Op({"request_range": body})


def put(key: Bytesish, value: Bytesish = b"", *, lease: int = 0, prev_kv: bool = False,
        ignore_value: bool = False, ignore_lease: bool = False) -> Op:
    if not to_bytes(key):
        raise ValueError("key must not be empty")
    body: Json = {"key": b64(key)}
    put_opt(body, "value", b64(value) if to_bytes(value) else "")
    for name, v in (("lease", lease), ("prev_kv", prev_kv), ("ignore_value", ignore_value),
                    ("ignore_lease", ignore_lease)):
        put_opt(body, name, v)
    return Op({"request_put": body})


def delete(key: Bytesish, range_end: Bytesish | None = None, *, prefix: bool = False,
           from_key: bool = False, prev_kv: bool = False) -> Op:
    body = key_range(key, range_end, prefix=prefix, from_key=from_key)
    put_opt(body, "prev_kv", prev_kv)
    return Op({"request_delete_range": body})


def nested(txn: Txn) -> Op:
    return Op({"request_txn": txn.wire()})


@dataclass(slots=True, frozen=True)
class Compare:
    """`target(key) <op> operand`, built with the comparison operators of `Target`."""

    wire: Json


@dataclass(slots=True, frozen=True)
class Target:
    """A comparable attribute of a key (or of every key in `[key, range_end)`)."""

    name: str  # VERSION CREATE MOD VALUE LEASE
    key: bytes
    range_end: bytes = b""

    def _cmp(self, op: str, operand: object) -> Compare:
        if self.name not in _TARGET_FIELD:
            raise ValueError(f"bad compare target {self.name}")
        body: Json = {"key": b64(self.key), "target": self.name, "result": _RESULTS[op]}
        if self.range_end:
            body["range_end"] = b64(self.range_end)
        if self.name == "VALUE":
            if not isinstance(operand, bytes | str):
                raise TypeError("value compares take bytes or str")
            put_opt(body, "value", b64(operand))
        else:
            if not isinstance(operand, int) or isinstance(operand, bool):
                raise TypeError(f"{self.name.lower()} compares take an int")
            put_opt(body, _TARGET_FIELD[self.name], operand)
        return Compare(body)

    def __eq__(self, operand: object) -> Compare:  # type: ignore[override]
        return self._cmp("==", operand)

    def __ne__(self, operand: object) -> Compare:  # type: ignore[override]
        return self._cmp("!=", operand)

    def __gt__(self, operand: object) -> Compare:
        return self._cmp(">", operand)

    def __lt__(self, operand: object) -> Compare:
        return self._cmp("<", operand)

    __hash__ = None  # type: ignore[assignment]

    def compare(self, op: str, operand: object) -> Compare:
        """The operator spelled as text (`=`, `==`, `!=`, `>`, `<`), as etcdctl reads it."""
        op = "==" if op == "=" else op
        if op not in _RESULTS:
            raise ValueError(f"bad compare operator {op!r}")
        return self._cmp(op, operand)


def version(key: Bytesish, range_end: Bytesish = b"") -> Target:
    return Target("VERSION", to_bytes(key), to_bytes(range_end))


def create_revision(key: Bytesish, range_end: Bytesish = b"") -> Target:
    return Target("CREATE", to_bytes(key), to_bytes(range_end))


def mod_revision(key: Bytesish, range_end: Bytesish = b"") -> Target:
    return Target("MOD", to_bytes(key), to_bytes(range_end))


def value(key: Bytesish, range_end: Bytesish = b"") -> Target:
    return Target("VALUE", to_bytes(key), to_bytes(range_end))


def lease(key: Bytesish, range_end: Bytesish = b"") -> Target:
    return Target("LEASE", to_bytes(key), to_bytes(range_end))


@dataclass(slots=True)
class Txn:
    """An etcd transaction: if every compare holds, run `success`, else `failure`."""

    compares: list[Compare] = field(default_factory=list)
    success: list[Op] = field(default_factory=list)
    failure: list[Op] = field(default_factory=list)

    def when(self, *compares: Compare) -> Self:
        self.compares.extend(compares)
        return self

    def then(self, *ops: Op) -> Self:
        self.success.extend(ops)
        return self

    def otherwise(self, *ops: Op) -> Self:
        self.failure.extend(ops)
        return self

    def is_read_only(self) -> bool:
        def ro(op: Op) -> bool:
            if "request_range" in op.wire:
                return True
            if "request_txn" in op.wire:
                inner = op.wire["request_txn"]
                return all(ro(Op(o)) for o in inner.get("success", []) + inner.get("failure", []))
            return False
        return all(ro(o) for o in self.success + self.failure)

    def wire(self) -> Json:
        body: Json = {}
        put_opt(body, "compare", [c.wire for c in self.compares])
        put_opt(body, "success", [o.wire for o in self.success])
        put_opt(body, "failure", [o.wire for o in self.failure])
        return body
