"""Shipment history for training (a given file, or the default generated one), and the
train-and-save step that `train` and `serve` (with no model yet) share."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from data.tables import read_table
from model.artifact import file_sha256
from model.errors import AdvisorError
from model.predictor import AdvisorModel
from model.schema import Validated, validate_history
from service.settings import Settings

__all__ = [
    "LoadedHistory",
    "TrainedModel",
    "default_history_path",
    "latest_date",
    "load_history",
    "train_and_save",
]


@dataclass(frozen=True)
class LoadedHistory:
    validated: Validated
    path: Path
    sha256: str
    generated_now: bool = False


def default_history_path(settings: Settings) -> Path:
    return settings.data_dir / f"default_history_{settings.default_history_rows}.parquet"


def ensure_default_history(settings: Settings) -> tuple[Path, bool]:
    """The bundled default history, generated deterministically on first use."""
    from data.generate import DEFAULT_AS_OF, DEFAULT_SEED, generate_history, write_generated

    path = default_history_path(settings)
    if path.is_file():
        return path, False
    frame = generate_history(settings.default_history_rows, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF)
    write_generated(frame, path, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF, kind="history")
    return path, True


def load_history(path: Path | None, settings: Settings) -> LoadedHistory:
    """Read and validate history; ``None`` means the default generated history."""
    generated = False
    if path is None:
        path, generated = ensure_default_history(settings)
    frame = read_table(path)
    return LoadedHistory(
        validated=validate_history(frame),
        path=path,
        sha256=file_sha256(path),
        generated_now=generated,
    )


def latest_date(history: pd.DataFrame) -> date:
    """The history's cut-off by default: its latest shipment or delivery date."""
    latest = max(history["shipped_at"].max(), history["delivered_at"].max(skipna=True))
    return pd.Timestamp(latest).date()


@dataclass(frozen=True)
class TrainedModel:
    fitted: AdvisorModel
    manifest: dict[str, Any]
    history: LoadedHistory
    cutoff: date
    rejects_path: Path | None  # the history rows left out, when there were any


def train_and_save(
    history_path: Path | None,
    directory: Path,
    settings: Settings,
    *,
    as_of: date | None = None,
    status: Callable[[str], AbstractContextManager[Any]] | None = None,
) -> TrainedModel:
    """Read and validate history, train as of ``as_of`` (default: its latest date), save
    the artifact into ``directory`` with the rejected history rows beside it.

    ``status(text)`` (e.g. a rich console's) shows each slow step while it runs.
    """
    from model.artifact import save_model
    from model.train import train_model

    def step(text: str) -> AbstractContextManager[Any]:
        return status(text) if status is not None else nullcontext()

    with step("reading history"):
        loaded = load_history(history_path, settings)
    valid = loaded.validated.valid
    if valid.empty:
        raise AdvisorError(f"{loaded.path}: no valid shipment rows to train on")
    cutoff = as_of or latest_date(valid)
    with step(f"training on {len(valid):,} shipments as of {cutoff}"):
        fitted = train_model(valid, cutoff)
    rejects = loaded.validated.rejects
    manifest = save_model(
        fitted,
        directory,
        keys=settings.signing_keys(),  # signed when a signing key is configured
        data_sha256=loaded.sha256,
        data_source=str(loaded.path),
        rows_rejected=len(rejects),
    )
    rejects_path = None
    if len(rejects):
        rejects_path = directory / "history_rejects.csv"
        rejects.to_csv(rejects_path, index=False)
    return TrainedModel(fitted, manifest, loaded, cutoff, rejects_path)
