"""What a log line knows about the event being handled, and the JSON log format.

The pipeline sets `event_log_context` (protocol, key) in each key's worker task, so every line
logged while an application handles an event, in that task or in tasks it starts, carries
them; `JsonFormatter` writes one JSON object a line with them and the current trace id
(``gateway run --log-format json``).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from gateway import tracing

__all__ = ["LOG_FORMATS", "JsonFormatter", "LogFormat", "event_log_context"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

event_log_context: ContextVar[tuple[str, str] | None] = ContextVar(
    "gateway_event_log_context", default=None
)
"""(protocol, key) of the event the current task handles, None outside one."""


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the event's context."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = event_log_context.get()
        if event is not None:
            line["protocol"], line["key"] = event
        trace_id = tracing.trace_id()
        if trace_id is not None:
            line["trace_id"] = trace_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
