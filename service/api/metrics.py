"""Prometheus metrics of one app, in the app's own registry (two apps never share counters)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.logs import REQUEST_ID_HEADER, AccessLineWriter, log_access, request_id_for

__all__ = ["ApiMetrics", "MetricsMiddleware"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ApiMetrics:
    """Requests by route and status, latency, recommendations by action, the model loaded."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "advisor_http_requests",
            "HTTP requests by route template, method and status code.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "advisor_http_request_duration_seconds",
            "Time from request start to the end of the response, by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.recommendations = Counter(
            "advisor_recommendations",
            "Recommendations given, by action.",
            ("action",),
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "advisor_model_loaded",
            "1 for the model version being served.",
            ("model_version",),
            registry=self.registry,
        )
        self.reloads = Counter(
            "advisor_model_reloads",
            "Model reload attempts by outcome (ok, refused).",
            ("outcome",),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "advisor_microbatch_size",
            "Single-order requests scored together in one frame.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.scoring = Histogram(
            "advisor_scoring_seconds",
            "Time the scoring thread spends on one frame (micro-batch or batch request).",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._actions: dict[str, Any] = {}

    def count_actions(self, actions: list[str]) -> None:
        for action in actions:
            child = self._actions.get(action)
            if child is None:
                child = self._actions[action] = self.recommendations.labels(action)
            child.inc()

    def set_model(self, model_version: str | None) -> None:
        self.model_loaded.clear()
        if model_version is not None:
            self.model_loaded.labels(model_version).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware, outermost: gives every HTTP request its id (``X-Request-ID`` in
    and out), counts it by route template and writes its access line (:mod:`service.api.logs`,
    to ``access`` when given). One layer, one timer and one wrapper of ``send`` for all
    three: every layer costs the busiest route a few microseconds."""

    def __init__(
        self, app: ASGIApp, metrics: ApiMetrics, access: AccessLineWriter | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access = access
        self._children: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_for(scope["headers"])
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        echoed = (REQUEST_ID_HEADER, request_id.encode())
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self._observe(template, method if method in _METHODS else "other", status, elapsed)
            log_access(self.access, request_id, method, template, status, elapsed * 1000, state)

    def _observe(self, template: str, method: str, status: int, elapsed: float) -> None:
        key = (template, method, status)
        counter = self._children.get(key)
        if counter is None:
            counter = self._children[key] = self.metrics.requests.labels(template, method, status)
        counter.inc()
        timer = self._timers.get(template)
        if timer is None:
            timer = self._timers[template] = self.metrics.latency.labels(template)
        timer.observe(elapsed)
