"""Structured logs: one JSON object a line, with the request id, for the production server.

Messages are the platform's own log calls, which name records by internal ids only; the access
log (gunicorn, see ``serve``) has the path without its query string, for the same reason: no
identity number, name or phone number reaches a log.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


def _request_id() -> str | None:
    from flask import g, has_request_context

    return g.get("request_id") if has_request_context() else None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _request_id()
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(level: int = logging.INFO) -> None:
    """The root logger writes JSON lines to standard error (systemd's journal keeps them)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# gunicorn's access log as JSON (its atoms: t time, m method, U path without the query string,
# s status, B bytes, M milliseconds, the response's X-Request-ID).
ACCESS_LOG_FORMAT = json.dumps(
    {
        "time": "%(t)s",
        "level": "info",
        "logger": "access",
        "method": "%(m)s",
        "path": "%(U)s",
        "status": "%(s)s",
        "bytes": "%(B)s",
        "ms": "%(M)s",
        "request_id": "%({x-request-id}o)s",
    }
)

# gunicorn's own loggers: its messages as JSON lines like ours, the access lines (already JSON,
# ACCESS_LOG_FORMAT) as they are; both to standard error.
GUNICORN_LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "kyso.platform.ops.logs.JsonFormatter"},
        "line": {"format": "%(message)s"},
    },
    "handlers": {
        "error": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "stream": "ext://sys.stderr",
        },
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": ["error"]},
}
