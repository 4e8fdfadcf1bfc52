"""``POST /v1/recommendations`` (one order) and ``POST /v1/recommendations/batch``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from pydantic_core import to_json

from service.api.batching import score_orders
from service.api.deps import LoadedModelDep, SettingsDep
from service.api.logs import note_request
from service.api.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    Recommendation,
    RecommendationRequest,
)

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    413: {"model": ErrorResponse, "description": "Body or batch larger than the limits."},
    422: {"model": ErrorResponse, "description": "Each failing field, located, and why."},
    503: {"model": ErrorResponse, "description": "No model loaded yet."},
}


SINGLE_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/RecommendationRequest"}}
    },
}


@router.post(
    "",
    response_model=Recommendation,
    responses=ERRORS,
    summary="Recommend an action for one open order",
    openapi_extra={"requestBody": SINGLE_BODY},
)
async def recommend(request: Request, loaded: LoadedModelDep) -> Response:
    """The action for one open order as of ``as_of``: exactly what `window-advisor score`
    writes for it, with each reason code explained."""
    # The body is parsed and checked by pydantic straight from the bytes (the schema is
    # documented through ``openapi_extra``): the busiest route skips FastAPI's generic body
    # handling, a sizeable share of its time per request.
    try:
        order = RecommendationRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None
    state = request.app.state
    result = await state.batcher.score(order, order.as_of, loaded)
    state.metrics.count_actions([result["action"]])
    note_request(request.scope, orders=1)
    return Response(to_json(result), media_type="application/json")


async def enforce_batch_limit(request: Request, settings: SettingsDep) -> None:
    """413 for more than ``ADVISOR_MAX_BATCH`` orders, before any order is checked."""
    try:
        body = await request.json()  # already parsed (and cached) by FastAPI
    except (ValueError, RecursionError):
        return  # not JSON: body validation reports it
    orders = body.get("orders") if isinstance(body, dict) else None
    if isinstance(orders, list) and len(orders) > settings.max_batch:
        raise HTTPException(
            status_code=413,
            detail=f"batch of {len(orders):,} orders is over the limit of"
            f" {settings.max_batch:,} (ADVISOR_MAX_BATCH); split it",
        )


@router.post(
    "/batch",
    response_model=BatchResponse,
    responses=ERRORS,
    dependencies=[Depends(enforce_batch_limit)],
    summary="Recommend actions for a page of open orders",
)
async def recommend_batch(
    batch: BatchRequest, loaded: LoadedModelDep, request: Request
) -> Response:
    """Up to ``ADVISOR_MAX_BATCH`` orders (default 1000) with one ``as_of``; results come in
    input order. An invalid order fails the whole batch with 422, located by index."""
    state = request.app.state
    results = (
        await state.batcher.run(score_orders, batch.orders, loaded, batch.as_of)
        if batch.orders
        else []
    )
    state.metrics.count_actions([r["action"] for r in results])
    note_request(request.scope, orders=len(results))
    return Response(to_json({"results": results}), media_type="application/json")
