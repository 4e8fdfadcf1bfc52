"""Loading shipment history for training: a given file, or the default generated one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from model.artifact import file_sha256
from model.schema import Validated, validate_history
from service.settings import Settings
from service.tables import read_table

__all__ = ["LoadedHistory", "default_history_path", "latest_date", "load_history"]


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
