"""How log lines are written: one JSON object a line for log search (LOG_FORMAT=json, the default in production),
or plain readable lines in development; either way with the request ids in force (fraudsite/request_id.py).

A line's own fields (`extra=` at the call) become JSON fields beside `time`, `level`, `logger` and `message`;
`request_id` names the request the line is about, `request_ids` every request of an ingest batch.
"""

from __future__ import annotations

import logging

from pythonjsonlogger import json
from pythonjsonlogger.core import RESERVED_ATTRS

from fraudsite.request_id import current


class JsonFormatter(json.JsonFormatter):
    """python-json-logger's formatter, without uvicorn's `color_message` (its message again, in terminal colours)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "color_message"])
        super().__init__(*args, **kwargs)


class RequestIdFilter(logging.Filter):
    """Puts the request ids in force on every record the handler writes (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current()
        if len(ids) == 1:
            record.request_id = ids[0]
        elif ids:
            record.request_ids = list(ids)
        return True


class PlainFormatter(logging.Formatter):
    """Django's usual line, and the request id(s) at its end when there are any."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = getattr(record, "request_ids", None) or [getattr(record, "request_id", "")]
        return f"{line} [request {' '.join(ids)}]" if ids[0] else line
