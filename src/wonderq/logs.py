"""How WonderQ writes its logs: one line per record on stderr, as text or as JSON (LOG_FORMAT), at LOG_LEVEL.

Access log records (logger `wonderq.access`, one per request) and error records carry the request's fields
(request id, method, route, status, duration) as attributes; the JSON format writes them as keys.

A record often holds what a client sent (a path, a queue name): the text format escapes every control character
in it (`\n` as the two characters backslash and n, ESC as `\x1b`), so no request can forge a log line or send
escape sequences to an operator's terminal, and indents a traceback's lines under their record. JSON strings are
escaped by JSON itself.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]
REQUEST_FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 and the Unicode line separators
NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
TRACEBACK_INDENT = "    "


def escape(text: str) -> str:
    """`text` with every control character written as an escape: one line, and nothing a terminal acts on."""
    return CONTROL.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    character = found.group()
    code = ord(character)
    return NAMED.get(character) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with `asctime` as logging.Formatter writes it by default (local time, then milliseconds), its
    date and time part made once per second rather than once per record."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return f"{self._stamp},{int(record.msecs):03d}"  # as default_msec_format, "%s,%03d", writes it

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return "\n".join(TRACEBACK_INDENT + escape(line) for line in super().formatException(ei).splitlines())

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(TRACEBACK_INDENT + escape(line) for line in stack_info.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with milliseconds), level, logger, message, the request
    fields a record carries, and `error` with the traceback of an exception."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""  # the time of `_second`, to the second, without its offset

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds").removesuffix("+00:00")
            self._second = second
        entry: dict[str, Any] = {
            "time": f"{self._stamp}.{int(record.msecs):03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in REQUEST_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, log_format: LogFormat) -> None:
    """Send every record at `level` or above to stderr in `log_format`, replacing any earlier setup."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
