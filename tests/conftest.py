"""Shared fixtures: a small generated history and a model trained on it once per session."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from data.generate import DEFAULT_AS_OF, generate_history, generate_open_orders, generate_shipments
from model.artifact import load_model, save_model
from model.events import ScanTable, match_events, validate_events
from model.predictor import AdvisorModel
from model.schema import validate_history
from model.train import TrainingConfig, train_model
from service.settings import get_settings

# Tests run two at a time (pytest -n 2) on two cores: one OpenMP/BLAS thread per worker
# avoids oversubscription, under which OpenMP's spinning threads slow fits many-fold.
threadpool_limits(limits=1)

SMALL_ROWS = 20_000
AS_OF: date = DEFAULT_AS_OF
# Small and fast: enough trees to learn lanes, few enough for a quick suite.
FAST_TRAINING = TrainingConfig(hazard={"max_iter": 60, "max_person_days": 300_000})
FAST_SCAN_TRAINING = TrainingConfig(
    hazard={"max_iter": 60, "max_person_days": 300_000},
    scans={"max_iter": 80, "random_landmarks": 4, "max_rows": 150_000},
)


def scans_for(events: pd.DataFrame, orders: pd.DataFrame) -> ScanTable:
    """Raw scans validated and matched to validated ``orders`` (the train and score path)."""
    valid = validate_events(events).valid
    return match_events(
        ScanTable.from_frame(valid),
        orders["order_id"].to_numpy(dtype=object),
        orders["shipped_at"].to_numpy(),
    ).table


@pytest.fixture(scope="session")
def small_history() -> pd.DataFrame:
    """Generated history (raw frame, as written to a file) of ``SMALL_ROWS`` shipments."""
    return generate_history(SMALL_ROWS, seed=11, as_of=AS_OF)


@pytest.fixture(scope="session")
def trained_model_dir(
    tmp_path_factory: pytest.TempPathFactory, small_history: pd.DataFrame
) -> Path:
    """A verified model artifact directory trained on ``small_history``."""
    directory = tmp_path_factory.mktemp("model")
    valid = validate_history(small_history).valid
    fitted = train_model(valid, AS_OF, FAST_TRAINING)
    save_model(fitted, directory, data_sha256="0" * 64, data_source="tests:small_history")
    return directory


@pytest.fixture(scope="session")
def small_model(trained_model_dir: Path) -> AdvisorModel:
    model, _ = load_model(trained_model_dir)
    return model


@pytest.fixture(scope="session")
def small_events() -> pd.DataFrame:
    """The carrier scans of ``small_history`` (raw frame, as written to a file)."""
    return generate_shipments(SMALL_ROWS, seed=11, as_of=AS_OF).events


@pytest.fixture(scope="session")
def scan_model(small_history: pd.DataFrame, small_events: pd.DataFrame) -> AdvisorModel:
    """A model trained on ``small_history`` with its scans (not saved)."""
    valid = validate_history(small_history).valid
    return train_model(valid, AS_OF, FAST_SCAN_TRAINING, scans=scans_for(small_events, valid))


@pytest.fixture(scope="session")
def open_orders() -> pd.DataFrame:
    """A few hundred generated open orders at ``AS_OF`` (raw frame)."""
    return generate_open_orders(400, seed=5, as_of=AS_OF)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings are read from the environment per test, never leaked between tests."""
    for name in ("ADVISOR_MODEL_DIR", "ADVISOR_POLICY_FILE", "ADVISOR_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
