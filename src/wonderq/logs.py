"""How WonderQ writes its logs: one line per record on stderr, as text or as JSON (LOG_FORMAT), at LOG_LEVEL.

Access log records (logger `wonderq.access`, one per request) and error records carry the request's fields
(request id, method, route, status, duration) as attributes; the JSON format writes them as keys.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

LogFormat = Literal["text", "json"]
REQUEST_FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
