"""``create_app``: the FastAPI application of the recommendation service.

The model is loaded once, in the lifespan (off the event loop), into a
:class:`~service.api.state.ModelHolder`; routes take the current snapshot through the
``current_model`` dependency, which tests override with a small model.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import SecretStr
from threadpoolctl import threadpool_limits

from model.errors import AdvisorError
from service.api.batching import MicroBatcher
from service.api.errors import install_error_handlers
from service.api.logs import AccessLineWriter
from service.api.metrics import ApiMetrics, MetricsMiddleware
from service.api.middleware import BearerAuth, BodySizeLimit
from service.api.routes import countries, health, model, recommendations
from service.api.schemas import RecommendationRequest
from service.api.settings import ApiSettings
from service.api.state import LoadedModel, ModelHolder, load_snapshot
from service.policy import load_policy
from service.settings import Settings

__all__ = ["create_app"]

log = logging.getLogger("service.api")

DESCRIPTION = """\
Advises, per open order, **extend** (by 30 days), **escalate**, **respond_to_dispute** or
**none**, from the late-arrival probabilities of a model trained on the seller's shipment
history. The decision for an order and `as_of` is exactly the one `window-advisor score`
writes: both call the same scoring function.

When `ADVISOR_API_KEY` is set, every `/v1` route needs `Authorization: Bearer <key>`;
`/healthz`, `/readyz` and `/metrics` stay open. `/v1/admin` routes need the admin key
(`ADVISOR_ADMIN_KEY`, never the API key) and are disabled (403) while none is set. Every
response carries an `X-Request-ID` (the request's own, if it sent a plain one).
"""


def tune_gc_for_serving() -> None:
    """Keep the cyclic garbage collector off the latency tail of a serving process.

    The model and the libraries are long-lived: frozen, they are never scanned again; and a
    larger first-generation threshold makes collections rarer (measured: p99 of the
    single-order route at 32 connections fell from ~140 ms to ~50 ms).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)


def openapi_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the bearer scheme on every ``/v1`` operation (cached)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        # The single-order route parses its body itself (see routes.recommendations).
        components.setdefault("schemas", {})["RecommendationRequest"] = (
            RecommendationRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "ADVISOR_API_KEY on /v1 routes (when set); ADVISOR_ADMIN_KEY"
                " on /v1/admin routes.",
            }
        }
        error = {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
        unauthorized = {
            "description": "Missing or wrong bearer token (only when a key is set).",
            "content": {"application/json": error},
        }
        for path, operations in schema["paths"].items():
            if path.startswith("/v1"):
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation.setdefault("responses", {}).setdefault("401", unauthorized)
        app.openapi_schema = schema
    return app.openapi_schema


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def create_app(settings: Settings | None = None, *, loaded: LoadedModel | None = None) -> FastAPI:
    """Build the app. ``settings`` default to the ``ADVISOR_*`` environment; ``loaded``
    skips loading ``settings.model_dir`` at startup (the model is already at hand)."""
    api_settings = ApiSettings.from_settings(settings)
    policy = load_policy(api_settings.policy_file)  # a broken policy file fails at once
    holder = ModelHolder(loaded)
    metrics = ApiMetrics()
    batcher = MicroBatcher(window=api_settings.batch_window_ms / 1000.0)
    batcher.batch_sizes = metrics.batch_size.observe
    batcher.scoring_seconds = metrics.scoring.observe
    access_writer = AccessLineWriter() if api_settings.access_log_stderr else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # One OpenMP/BLAS thread: requests score small frames, where a pool of spinning
        # threads costs far more than it saves (and fights the event loop for the cores).
        threadpool_limits(limits=1)
        if holder.current is None:
            try:
                snapshot = await asyncio.to_thread(
                    load_snapshot, api_settings.model_dir, policy, keys=api_settings.signing_keys()
                )
                holder.swap(snapshot)
            except AdvisorError as exc:  # serve anyway: /readyz says why, reload can fix it
                app.state.load_error = str(exc)
                log.warning("no model loaded: %s", exc)
        current = holder.current
        metrics.set_model(current.model_version if current else None)
        if api_settings.tune_gc:
            tune_gc_for_serving()
        try:
            yield
        finally:
            batcher.close()
            if access_writer is not None:
                access_writer.close()

    app = FastAPI(
        title="window-advisor",
        version="1",
        summary="Delivery-window extension advisor",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = api_settings
    app.state.policy = policy
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.load_error = None
    app.state.model_root = api_settings.resolved_model_root()  # fixed at startup
    install_error_handlers(app)
    for module in (recommendations, countries, model, health):
        app.include_router(module.router)
    # Middleware, innermost first: body limit, then auth (401/403 before any body is read),
    # then metrics outermost (request id, counters, access line), so 401s and 413s are
    # counted and logged too.
    app.add_middleware(BodySizeLimit, max_bytes=api_settings.max_body_bytes)
    app.add_middleware(
        BearerAuth,
        key=_secret(api_settings.api_key),
        admin_key=_secret(api_settings.admin_key),
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics, access=access_writer)
    app.openapi = lambda: openapi_schema(app)  # type: ignore[method-assign]
    return app
