"""``GET /v1/model`` (the manifest) and ``POST /v1/admin/reload`` (atomic model swap)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request

from service.api.deps import HolderDep, LoadedModelDep
from service.api.schemas import ErrorResponse, ReloadRequest, ReloadResponse
from service.api.state import ReloadRefused

router = APIRouter(prefix="/v1")

MANIFEST_EXAMPLE = {
    "format_version": 2,
    "model_version": "20261101-07bf84e232",
    "created_at": "2026-11-26T23:03:12+00:00",
    "as_of": "2026-11-01",
    "model_sha256": "07bf84e232...",
    "data": {"source": "artifacts/data/default_history_120000.parquet", "rows": 120000},
    "libraries": {"python": "3.11.7", "scikit-learn": "1.9.1"},
    "training": {"as_of": "2026-11-01", "rows": 120000},
    "metrics": {"p_late": {"auc": 0.66, "brier": 0.11}},
}


@router.get(
    "/model",
    tags=["model"],
    response_model=dict[str, Any],
    responses={
        200: {"content": {"application/json": {"example": MANIFEST_EXAMPLE}}},
        401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
        503: {"model": ErrorResponse, "description": "No model loaded yet."},
    },
    summary="The loaded model's manifest",
)
async def model_manifest(loaded: LoadedModelDep) -> dict[str, Any]:
    """Version, training data fingerprint, library versions and holdout metrics."""
    return loaded.manifest


@router.post(
    "/admin/reload",
    tags=["admin"],
    response_model=ReloadResponse,
    responses={
        401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
        409: {
            "model": ErrorResponse,
            "description": "The artifact is missing, tampered with or unusable; the previous"
            " model keeps serving.",
        },
    },
    summary="Load the model again (or another one) and swap it in",
)
async def reload_model(
    request: Request, holder: HolderDep, body: ReloadRequest | None = Body(None)
) -> ReloadResponse:
    """Loads and verifies the artifact aside, scores a probe order and the latest orders
    served with it (warming its caches), then swaps it in atomically: requests in flight
    finish on the model they started with."""
    state = request.app.state
    current = holder.current
    if body is not None and body.model_dir:
        directory = Path(body.model_dir)
    elif current is not None:
        directory = current.model_dir
    else:
        directory = state.settings.model_dir
    try:
        warm = list(state.batcher.recent)
        loaded, previous = await holder.reload(directory, state.policy, warm)
    except ReloadRefused:
        state.metrics.reloads.labels("refused").inc()
        raise
    state.metrics.reloads.labels("ok").inc()
    state.metrics.set_model(loaded.model_version)
    return ReloadResponse(
        model_version=loaded.model_version,
        previous_model_version=previous,
        model_dir=str(directory),
    )
