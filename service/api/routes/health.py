"""``/healthz`` (alive), ``/readyz`` (a model is loaded) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="The process is alive",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="A model is loaded",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"status": "ready", "model_version": "20261101-07bf84e232"}
                }
            }
        },
        503: {
            "content": {
                "application/json": {
                    "example": {"status": "not ready", "detail": "no model in artifacts/model"}
                }
            }
        },
    },
)
async def readyz(request: Request) -> JSONResponse:
    loaded = request.app.state.holder.current
    if loaded is None:
        detail = request.app.state.load_error or "no model loaded yet"
        return JSONResponse({"status": "not ready", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ready", "model_version": loaded.model_version})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                CONTENT_TYPE_LATEST: {
                    "example": "advisor_http_requests_total"
                    '{method="GET",route="/healthz",'
                    'status="200"} 1.0'
                }
            }
        }
    },
)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
