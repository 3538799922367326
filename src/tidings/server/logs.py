"""The logs of ``tidings run`` and ``tidings demo`` as a log shipper takes them: ``--log-format json``
writes one JSON object a line to stderr, uvicorn's lines and the access log among them.

Each object has ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, then what the log
call knows of :data:`CONTEXT` (tidings passes them with ``extra=``: :func:`context`), and
``exception``, a traceback, where there is one. The access log's lines (uvicorn's HTTP requests and
WebSocket handshakes) name their ``transport``: ``websocket``, ``polling`` (Engine.IO long-polling)
or ``http``.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Collection
from typing import Any

FORMATS = ("text", "json")
LOG_FORMAT_ENV = "TIDINGS_LOG_FORMAT"
DEFAULT_FORMAT = "text"
#: What a log record may say of where it happened, as fields of its JSON object.
CONTEXT = ("session_id", "namespace", "channel", "transport")
#: uvicorn's (and tidings' own WebSocket protocol's) line for a WebSocket handshake.
_WEBSOCKET_LINE = '%s - "WebSocket %s" '


def context(session_id: str, namespace: str | None = None, channels: Collection[str] = ()) -> dict[str, str]:
    """The ``extra=`` of a log call about a session: its id, its namespace, and its channel when the
    call concerns one."""
    fields = {"session_id": session_id}
    if namespace is not None:
        fields["namespace"] = namespace
    if len(channels) == 1:
        fields["channel"] = next(iter(channels))
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        entry: dict[str, Any] = {
            "time": time.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TransportFilter(logging.Filter):
    """Names the transport of each access line (``record.transport``); lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "transport", None) is not None:
            return True
        if isinstance(record.msg, str) and record.msg.startswith(_WEBSOCKET_LINE):
            record.transport = "websocket"
        elif record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) > 2:
            query = str(record.args[2]).partition("?")[2]
            record.transport = "polling" if "transport=polling" in query.split("&") else "http"
        return True


def json_config(level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of ``--log-format json`` at ``level``: every logger, uvicorn's
    too, through one handler on stderr. uvicorn applies it in each worker process as well."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"transport": {"()": TransportFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "json",
                "filters": ["transport"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
