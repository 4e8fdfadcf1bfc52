"""Fixtures of the HTTP service tests: the small model as a snapshot, apps and clients."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from model.artifact import read_manifest
from model.predictor import AdvisorModel
from service.api import create_app
from service.api.deps import current_model
from service.api.settings import ApiSettings
from service.api.state import LoadedModel, lane_rows
from service.policy import PolicyConfig


def order_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Raw open orders as JSON objects: ISO dates, missing values left out."""
    records = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, Any] = {}
        for name, value in row.items():
            if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
                continue
            if isinstance(value, pd.Timestamp):
                value = value.date().isoformat()
            elif hasattr(value, "item"):  # numpy scalar
                value = value.item()
            record[str(name)] = value
        records.append(record)
    return records


@pytest.fixture(scope="session")
def records() -> Callable[[pd.DataFrame], list[dict[str, Any]]]:
    """:func:`order_records` (a fixture: test modules cannot import conftest)."""
    return order_records


@pytest.fixture(scope="session")
def snapshot(small_model: AdvisorModel, trained_model_dir: Path) -> LoadedModel:
    """The small model as the service holds it."""
    return LoadedModel(
        model=small_model,
        manifest=read_manifest(trained_model_dir),
        policy=PolicyConfig(),
        model_dir=trained_model_dir,
        lanes=lane_rows(small_model),
    )


def overridden_app(snapshot: LoadedModel, **settings: Any) -> FastAPI:
    """An app whose model directory is empty, serving ``snapshot`` through the override."""
    app = create_app(ApiSettings(model_dir=Path("/nonexistent/model"), **settings))
    app.dependency_overrides[current_model] = lambda: snapshot
    return app


@pytest.fixture(scope="session")
def app_factory(snapshot: LoadedModel) -> Callable[..., FastAPI]:
    """``app_factory(**settings)``: :func:`overridden_app` with the small model."""
    return lambda **settings: overridden_app(snapshot, **settings)


@pytest.fixture(scope="module")
def client(snapshot: LoadedModel) -> Iterator[TestClient]:
    with TestClient(overridden_app(snapshot)) as test_client:
        yield test_client
