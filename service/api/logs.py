"""Structured logs of the service: one JSON object per line, an access line per request.

The outermost middleware (:class:`service.api.metrics.MetricsMiddleware`, which also counts
the request) gives every request an id (:func:`request_id_for`: a plain incoming
``X-Request-ID`` is kept, anything else replaced by a fresh one), echoes it in the response,
and writes one access line (:func:`log_access`): time, request id, method, route template,
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

import collections
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

from starlette.types import Scope

__all__ = [
    "LOGGING_CONFIG",
    "REQUEST_ID_HEADER",
    "AccessLineWriter",
    "JsonFormatter",
    "log_access",
    "log_admin",
    "note_request",
    "request_id_for",
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
    written to ``stream`` (default: the current ``sys.stderr``) in batches.

    A request only queues its values (a tuple on a thread-safe deque); every ``batch``
    requests, and from a background thread every ``interval`` seconds, the queue is
    formatted and written, each write whole lines of at most ``PIPE_BUF`` bytes.
    :meth:`close` writes what is left."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = 0.25, batch: int = 32
    ) -> None:
        self._stream = stream
        self._interval = interval
        self._batch = batch
        self._clock = _Clock()
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._lock = threading.Lock()  # one drain at a time: lines stay in order
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
        """Queue one access line. ``request_id`` must be plain (``[A-Za-z0-9._:-]``, as
        :func:`request_id_for` makes sure); every other string is JSON-escaped."""
        queue = self._queue
        queue.append(
            (time.time(), request_id, method, route, status, latency_ms, model_version, orders)
        )
        if len(queue) >= self._batch:
            self.flush()
        elif self._thread is None:
            self._thread = threading.Thread(
                target=self._flush_regularly, name="access-log", daemon=True
            )
            self._thread.start()

    def _line(self, entry: tuple[Any, ...]) -> str:
        moment, request_id, method, route, status, latency_ms, model_version, orders = entry
        return (
            f'{{"time": "{self._clock.iso(moment)}", "level": "info",'
            f' "logger": "{access_log.name}", "message": "request",'
            f' "request_id": "{request_id}", "method": {_quoted(method)},'
            f' "route": {_quoted(route)}, "status": {status:d}, "latency_ms": {latency_ms:.2f},'
            f' "model_version": {_quoted(model_version)},'
            f' "orders": {"null" if orders is None else f"{orders:d}"}}}\n'
        )

    def flush(self) -> None:
        with self._lock:
            queue, stream = self._queue, self._stream or sys.stderr
            chunk: list[str] = []
            size = 0
            while queue:
                line = self._line(queue.popleft())
                if chunk and size + len(line) > _PIPE_BUF:
                    stream.write("".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                stream.write("".join(chunk))
                stream.flush()

    def close(self) -> None:
        self._closed.set()
        self.flush()

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
        # uvicorn's own access log is off (ours replaces it): warnings only.
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


def request_id_for(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's own ``X-Request-ID`` when it is plain, else a fresh one."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_ID.fullmatch(value):
                return value.decode()
            break
    return new_request_id()


def log_access(
    writer: AccessLineWriter | None,
    request_id: str,
    method: str,
    route: str,
    status: int,
    latency_ms: float,
    state: dict[str, Any],
) -> None:
    """The request's access line: to ``writer``, else to the ``service.api.access`` logger
    (built only when INFO is on there)."""
    model_version, orders = state.get("model_version"), state.get("orders")
    if writer is not None:
        writer.write(request_id, method, route, status, latency_ms, model_version, orders)
    elif access_log.isEnabledFor(logging.INFO):
        fields = {
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(latency_ms, 2),
            "model_version": model_version,
            "orders": orders,
        }
        access_log.info("request", extra={"fields": fields})
