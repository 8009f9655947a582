"""Structured logs: one line per event, JSON (zap-like, as etcd) or text.

Built on stdlib `logging` so aiohttp's and asyncio's own records come out in the
same format. Fields go as keyword arguments: ``log.info("became leader", term=5)``.
Levels are checked before any formatting, so a disabled debug call costs one
comparison; never log per entry on a hot path anyway.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import orjson

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
          "error": logging.ERROR}
_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn",
          logging.ERROR: "error", logging.CRITICAL: "fatal"}
ROOT = "raftnode"


def _ts(created: float) -> str:
    secs = int(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + \
        f".{int((created - secs) * 1e6):06d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, "fields", None) or {}
    if record.exc_info and record.exc_info[1] is not None:
        fields = {**fields, "error": f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"}
    return fields


class JsonFormatter(logging.Formatter):
    """{"level","ts","logger","msg", ...fields} on one line, like etcd's zap output."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"level": _NAMES.get(record.levelno, "info"), "ts": _ts(record.created),
                "logger": record.name, "msg": record.getMessage(), **_fields(record)}
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger msg k=v ...`` on one line; newlines in values are escaped."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_ts(record.created), _NAMES.get(record.levelno, "info").upper(), record.name,
                 record.getMessage()]
        parts += [f"{k}={_text(v)}" for k, v in _fields(record).items()]
        return " ".join(parts).replace("\n", "\\n")


def _text(v: Any) -> str:
    s = str(v)
    return orjson.dumps(s).decode() if (" " in s or '"' in s or not s) else s


class EventLogger:
    """A thin wrapper that turns keyword arguments into structured fields."""

    __slots__ = ("_log",)

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def _emit(self, level: int, msg: str, fields: dict[str, Any], exc: bool) -> None:
        if self._log.isEnabledFor(level):
            self._log.log(level, msg, extra={"fields": fields}, exc_info=exc, stacklevel=3)

    def debug(self, msg: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, msg, fields, False)

    def info(self, msg: str, **fields: Any) -> None:
        self._emit(logging.INFO, msg, fields, False)

    def warn(self, msg: str, **fields: Any) -> None:
        self._emit(logging.WARNING, msg, fields, False)

    def error(self, msg: str, exc: bool = False, **fields: Any) -> None:
        self._emit(logging.ERROR, msg, fields, exc)

    def enabled(self, level: str) -> bool:
        return self._log.isEnabledFor(LEVELS[level])


def get_logger(name: str = "") -> EventLogger:
    """A logger under the ``raftnode`` hierarchy (``get_logger("transport")``)."""
    return EventLogger(logging.getLogger(f"{ROOT}.{name}" if name else ROOT))


def setup(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure the root logger once at start: one handler, our format, the given level."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}")
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
