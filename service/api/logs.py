"""Structured logs of the service: one JSON object per line, an access line per request.

:class:`AccessLog` (pure ASGI, outermost) gives every request an id (a sane incoming
``X-Request-ID`` is kept, anything else replaced by a fresh one), echoes it in the response,
and logs one line on ``service.api.access``: time, request id, method, route template,
status, latency, and, where the route set them, the model version and the number of orders.
Never headers, bodies, query strings or order fields, so never a key. Admin actions log at
warning level on ``service.api.admin`` (:func:`log_admin`).

``serve`` hands :data:`LOGGING_CONFIG` to uvicorn, which applies it in every worker process,
and has the access lines written straight to stderr by an :class:`AccessLineWriter`: a line
per request through :mod:`logging` cost a third of the scoring route's CPU time (record,
handler, a write call per line; measured in bench/RESULTS.md), so they are encoded once and
written in batches of whole lines, each write at most ``PIPE_BUF`` bytes (atomic on a pipe
shared by several workers), at least every quarter second. Without it (tests, library
use) they go to the ``service.api.access`` logger, and are not even built while INFO is off.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "LOGGING_CONFIG",
    "AccessLineWriter",
    "AccessLog",
    "JsonFormatter",
    "log_admin",
    "note_request",
    "request_id_of",
]

access_log = logging.getLogger("service.api.access")
admin_log = logging.getLogger("service.api.admin")

REQUEST_ID_HEADER = b"x-request-id"
# An incoming id is kept only when it is short and plain: it goes into logs and headers.
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


_encoder = json.JSONEncoder(default=str)  # one encoder, not one per line; ASCII output
_PIPE_BUF = 4096  # POSIX: writes up to this size to a pipe are never interleaved


@functools.lru_cache(maxsize=256)
def _quoted(value: str | None) -> str:
    """``value`` as JSON (a route, a method, a model version: few distinct ones)."""
    return _encoder.encode(value)


class _Clock:
    """ISO 8601 UTC with milliseconds; the part up to the second is reused within it."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, moment: float) -> str:
        second = int(moment)
        if second != self._second:
            stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second, self._prefix = second, stamp
        return f"{self._prefix}.{int((moment - second) * 1000):03d}+00:00"


class JsonFormatter(logging.Formatter):
    """A log record as one JSON line: time (UTC, ms), level, logger, message, and the
    record's ``fields`` (given with ``extra={"fields": {...}}``)."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._clock.iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(entry)


class AccessLineWriter:
    """Access lines, shaped as :class:`JsonFormatter` shapes ``service.api.access`` records,
    written to ``stream`` (default: the current ``sys.stderr``) in batches: a write when the
    next line would take the batch past ``PIPE_BUF`` bytes, and from a background thread
    every ``interval`` seconds. :meth:`close` writes what is left."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.25) -> None:
        self._stream = stream
        self._interval = interval
        self._clock = _Clock()
        self._lines: list[str] = []
        self._size = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None

    def write(
        self,
        request_id: str,
        method: str,
        route: str,
        status: int,
        latency_ms: float,
        model_version: str | None,
        orders: int | None,
    ) -> None:
        """One access line. ``request_id`` must be plain (``[A-Za-z0-9._:-]``, as
        :class:`AccessLog` makes sure); every other string is JSON-escaped."""
        line = (
            f'{{"time": "{self._clock.iso(time.time())}", "level": "info",'
            f' "logger": "{access_log.name}", "message": "request",'
            f' "request_id": "{request_id}", "method": {_quoted(method)},'
            f' "route": {_quoted(route)}, "status": {status:d}, "latency_ms": {latency_ms:.2f},'
            f' "model_version": {_quoted(model_version)},'
            f' "orders": {"null" if orders is None else f"{orders:d}"}}}\n'
        )
        with self._lock:
            if self._size + len(line) > _PIPE_BUF:
                self._write_locked()
            self._lines.append(line)
            self._size += len(line)
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._flush_regularly, name="access-log", daemon=True
            )
            self._thread.start()

    def flush(self) -> None:
        with self._lock:
            self._write_locked()

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def _write_locked(self) -> None:
        if self._lines:
            stream = self._stream or sys.stderr
            stream.write("".join(self._lines))
            stream.flush()
            self._lines, self._size = [], 0

    def _flush_regularly(self) -> None:
        while not self._closed.wait(self._interval):
            self.flush()


LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": JsonFormatter}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "service": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        # uvicorn's own access log is off (AccessLog replaces it): warnings only.
        "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}


class _RequestIds:
    """Fresh request ids: a random prefix per process and a counter (unique, and far
    cheaper per request than uuid4, which reads the OS's random source every time)."""

    def __init__(self) -> None:
        self.restart()
        os.register_at_fork(after_in_child=self.restart)  # a forked child draws its own

    def restart(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


new_request_id = _RequestIds().next


def request_id_of(scope: Scope) -> str | None:
    state = scope.get("state")
    return state.get("request_id") if isinstance(state, dict) else None


def note_request(
    scope: Scope, *, model_version: str | None = None, orders: int | None = None
) -> None:
    """Record what the access line should say about this request (called by routes)."""
    state = scope.setdefault("state", {})
    if model_version is not None:
        state["model_version"] = model_version
    if orders is not None:
        state["orders"] = orders


def log_admin(scope: Scope, message: str, **fields: Any) -> None:
    """A warning-level line about an admin action (reload, refused access), with the
    request id and the client address."""
    client = scope.get("client")
    admin_log.warning(
        message,
        extra={
            "fields": {
                "request_id": request_id_of(scope),
                "client": client[0] if client else None,
                "path": scope.get("path"),
                **fields,
            }
        },
    )


class AccessLog:
    """Request id in and out, and one access line per HTTP request (to ``writer``, else to
    the ``service.api.access`` logger)."""

    def __init__(self, app: ASGIApp, writer: AccessLineWriter | None = None) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = b""
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                incoming = value
                break
        request_id = incoming.decode() if _SANE_ID.fullmatch(incoming) else new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        echoed = (REQUEST_ID_HEADER, request_id.encode())
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            latency_ms = (time.perf_counter() - start) * 1000
            if self.writer is not None:
                self.writer.write(
                    request_id,
                    scope.get("method", ""),
                    route,
                    status,
                    latency_ms,
                    state.get("model_version"),
                    state.get("orders"),
                )
            elif access_log.isEnabledFor(logging.INFO):
                fields = {
                    "request_id": request_id,
                    "method": scope.get("method", ""),
                    "route": route,
                    "status": status,
                    "latency_ms": round(latency_ms, 2),
                    "model_version": state.get("model_version"),
                    "orders": state.get("orders"),
                }
                access_log.info("request", extra={"fields": fields})
