"""Shared fixtures: a small generated history and a model trained on it once per session."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import joblib
import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from data.generate import DEFAULT_AS_OF, generate_history, generate_open_orders, generate_shipments
from model.artifact import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    file_sha256,
    library_versions,
    load_model,
    save_model,
)
from model.events import ScanTable, match_events, validate_events
from model.predictor import AdvisorModel
from model.schema import validate_history
from model.train import TrainingConfig, train_model
from service.settings import get_settings

# Tests run two at a time (pytest -n 2) on two cores: one OpenMP/BLAS thread per worker
# avoids oversubscription, under which OpenMP's spinning threads slow fits many-fold.
# threadpool_limits reaches the runtimes loaded now (BLAS); scikit-learn and xgboost load
# later, on first use, with OpenMP runtimes of their own that read OMP_NUM_THREADS when
# they load (without it, three training tests took 150-350 s instead of ~10 s).
os.environ.setdefault("OMP_NUM_THREADS", "1")
threadpool_limits(limits=1)

SETTINGS_FROM_ENVIRONMENT = (
    "ADVISOR_MODEL_DIR",
    "ADVISOR_POLICY_FILE",
    "ADVISOR_API_KEY",
    "ADVISOR_ADMIN_KEY",
    "ADVISOR_MODEL_ROOT",
    "ADVISOR_SIGNING_KEY",
    "ADVISOR_SIGNING_KEY_PREVIOUS",
)
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
def scan_model_dir(tmp_path_factory: pytest.TempPathFactory, scan_model: AdvisorModel) -> Path:
    """``scan_model`` saved as a verified artifact directory (for the CLI)."""
    directory = tmp_path_factory.mktemp("scan_model")
    save_model(scan_model, directory, data_sha256="0" * 64, data_source="tests:small_events")
    return directory


@pytest.fixture(scope="session")
def open_orders() -> pd.DataFrame:
    """A few hundred generated open orders at ``AS_OF`` (raw frame)."""
    return generate_open_orders(400, seed=5, as_of=AS_OF)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings are read from the environment per test, never leaked between tests."""
    for name in SETTINGS_FROM_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


class _RunsAShellCommand:
    """Pickles as a call of ``os.system(command)``: unpickling it runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return (os.system, (self.command,))


def write_exploit(directory: Path, marker: Path) -> Path:
    """The attack of issue 10: a ``model.joblib`` whose unpickling creates ``marker`` (a
    shell command), with a manifest that passes every check but a signature (its sha256,
    format and library versions)."""
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(_RunsAShellCommand(f"touch {shlex.quote(str(marker))}"), directory / MODEL_FILE)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_version": "20261101-exploit",
        "as_of": "2026-11-01",
        "model_sha256": file_sha256(directory / MODEL_FILE),
        "libraries": library_versions(),
        "training": {},
        "metrics": {},
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))
    return directory


@pytest.fixture(scope="session")
def exploit() -> Callable[[Path, Path], Path]:
    """:func:`write_exploit` (a fixture: test modules cannot import conftest)."""
    return write_exploit
