"""``GET /v1/model`` (the manifest) and ``POST /v1/admin/reload`` (atomic model swap, admin
key, confined to the model root)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Request

from model.artifact import confine_to_root
from model.errors import ModelRootError
from service.api.deps import HolderDep, LoadedModelDep
from service.api.logs import log_admin, note_request
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
        403: {
            "model": ErrorResponse,
            "description": "Admin routes disabled (no ADVISOR_ADMIN_KEY), the API key instead"
            " of the admin key, or a directory outside ADVISOR_MODEL_ROOT (nothing read).",
        },
        409: {
            "model": ErrorResponse,
            "description": "The artifact is missing, unsigned, tampered with or unusable; the"
            " previous model keeps serving.",
        },
    },
    summary="Load the model again (or another one) and swap it in (admin key)",
)
async def reload_model(
    request: Request, holder: HolderDep, body: ReloadRequest | None = Body(None)
) -> ReloadResponse:
    """Needs the admin key. A named directory must resolve (after `..` and symlinks) inside
    the model root, a relative one is taken under it; with a signing key configured the
    artifact's signature is verified before anything is unpickled. The model is loaded and
    verified aside, scores a probe order and the latest orders served (warming its caches),
    then is swapped in atomically: requests in flight finish on the model they started with."""
    state = request.app.state
    current = holder.current
    requested = body.model_dir if body is not None and body.model_dir else None
    try:
        if requested is not None:
            directory = confine_to_root(Path(requested), state.model_root)
        elif current is not None:
            directory = current.model_dir
        else:
            directory = state.settings.model_dir
    except ModelRootError as exc:
        state.metrics.reloads.labels("forbidden").inc()
        log_admin(
            request.scope, "model reload", outcome="forbidden", model_dir=requested, reason=str(exc)
        )
        raise
    try:
        warm = list(state.batcher.recent)
        loaded, previous = await holder.reload(
            directory, state.policy, warm, keys=state.settings.signing_keys()
        )
    except ReloadRefused as exc:
        state.metrics.reloads.labels("refused").inc()
        log_admin(
            request.scope,
            "model reload",
            outcome="refused",
            model_dir=str(directory),
            reason=str(exc),
        )
        raise
    state.metrics.reloads.labels("ok").inc()
    state.metrics.set_model(loaded.model_version)
    note_request(request.scope, model_version=loaded.model_version)
    log_admin(
        request.scope,
        "model reload",
        outcome="ok",
        model_dir=str(directory),
        model_version=loaded.model_version,
        previous_model_version=previous,
    )
    return ReloadResponse(
        model_version=loaded.model_version,
        previous_model_version=previous,
        model_dir=str(directory),
    )
