"""Dependencies of the routes, as ``Annotated`` aliases (tests override the functions).

Auth is not a dependency: :class:`service.api.middleware.BearerAuth` guards ``/v1`` and
``/v1/admin``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.api.batching import MicroBatcher
from service.api.logs import note_request
from service.api.metrics import ApiMetrics
from service.api.settings import ApiSettings
from service.api.state import LoadedModel, ModelHolder

__all__ = [
    "BatcherDep",
    "HolderDep",
    "LoadedModelDep",
    "MetricsDep",
    "SettingsDep",
    "current_model",
    "get_holder",
    "get_settings",
]


async def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def current_model(request: Request) -> LoadedModel:
    """The snapshot this request scores with (503 while no model is loaded); its version
    goes into the request's access line."""
    holder: ModelHolder = request.app.state.holder
    loaded = holder.require()
    note_request(request.scope, model_version=loaded.model_version)
    return loaded


async def get_batcher(request: Request) -> MicroBatcher:
    batcher: MicroBatcher = request.app.state.batcher
    return batcher


async def get_metrics(request: Request) -> ApiMetrics:
    metrics: ApiMetrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
LoadedModelDep = Annotated[LoadedModel, Depends(current_model)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
MetricsDep = Annotated[ApiMetrics, Depends(get_metrics)]
