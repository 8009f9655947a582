"""etcdctl's textual txn format, read by `raftctl txn` (pure parsing, no I/O).

Three blocks separated by empty lines: compares, success ops, failure ops.

    mod("key1") > "0"
    value("key2") = "x"

    put key1 "new value"
    get key2 --prefix

    del key1
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from cluster import txn as T
from cluster.codec import to_bytes

_COMPARE = re.compile(r'^\s*(\w+)\("((?:[^"\\]|\\.)*)"\)\s*(=|==|!=|<|>)\s*"((?:[^"\\]|\\.)*)"\s*$')
_TARGETS = {"c": "CREATE", "create": "CREATE", "m": "MOD", "mod": "MOD", "v": "VALUE",
            "val": "VALUE", "value": "VALUE", "ver": "VERSION", "version": "VERSION",
            "l": "LEASE", "lease": "LEASE"}


class TxnSyntaxError(ValueError):
    """A txn line that is not etcdctl syntax; names the line number and text."""


def _unquote(s: str) -> str:
    return s.replace('\\"', '"').replace("\\\\", "\\")


def parse_compare(line: str, lineno: int = 0) -> T.Compare:
    m = _COMPARE.match(line)
    if not m:
        raise TxnSyntaxError(f"line {lineno}: bad compare {line!r} "
                             '(expected e.g. mod("key") > "0")')
    target_name, key, op, operand = m.groups()
    target = _TARGETS.get(target_name.lower())
    if target is None:
        raise TxnSyntaxError(f"line {lineno}: unknown compare target {target_name!r}")
    key, operand = _unquote(key), _unquote(operand)
    tgt = T.Target(target, to_bytes(key))
    if target == "VALUE":
        return tgt.compare(op, operand)
    try:
        n = int(operand, 16) if target == "LEASE" else int(operand)
    except ValueError:
        raise TxnSyntaxError(f"line {lineno}: {target.lower()} compares need a number, got "
                             f"{operand!r}") from None
    return tgt.compare(op, n)


def parse_op(line: str, lineno: int = 0) -> T.Op:
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise TxnSyntaxError(f"line {lineno}: {e}: {line!r}") from None
    if not words:
        raise TxnSyntaxError(f"line {lineno}: empty request")
    verb, args = words[0], words[1:]
    flags = {a for a in args if a.startswith("--")}
    pos = [a for a in args if not a.startswith("--")]
    bad = flags - {"--prefix", "--from-key", "--prev-kv", "--keys-only", "--count-only"}
    if bad:
        raise TxnSyntaxError(f"line {lineno}: unsupported flags {sorted(bad)}")
    if verb == "put":
        if len(pos) != 2:
            raise TxnSyntaxError(f"line {lineno}: put needs a key and a value: {line!r}")
        return T.put(pos[0], pos[1], prev_kv="--prev-kv" in flags)
    if verb in ("get", "del", "delete"):
        if len(pos) not in (1, 2):
            raise TxnSyntaxError(f"line {lineno}: {verb} needs a key [range_end]: {line!r}")
        end = pos[1] if len(pos) == 2 else None
        if verb == "get":
            return T.get(pos[0], end, prefix="--prefix" in flags,
                         from_key="--from-key" in flags, keys_only="--keys-only" in flags,
                         count_only="--count-only" in flags)
        return T.delete(pos[0], end, prefix="--prefix" in flags,
                        from_key="--from-key" in flags, prev_kv="--prev-kv" in flags)
    raise TxnSyntaxError(f"line {lineno}: unknown request {verb!r} (use get, put or del)")


def parse_txn(lines: Iterable[str]) -> T.Txn:
    """Three blocks, each ended by an empty line (or the end of input)."""
    blocks: list[list[tuple[int, str]]] = [[], [], []]
    i = 0
    for lineno, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            i += 1
            if i > 2:
                break
            continue
        blocks[i].append((lineno, line))
    txn = T.Txn()
    txn.when(*(parse_compare(line, n) for n, line in blocks[0]))
    txn.then(*(parse_op(line, n) for n, line in blocks[1]))
    txn.otherwise(*(parse_op(line, n) for n, line in blocks[2]))
    return txn
