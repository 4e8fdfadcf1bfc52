"""Shipment history and its carrier scans for training (given files, or the default generated
ones), and the train-and-save step that `train` and `serve` (with no model yet) share."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.tables import read_table
from model.artifact import file_sha256
from model.errors import AdvisorError
from model.events import ScanTable, match_events, validate_events
from model.predictor import AdvisorModel
from model.schema import REJECT_COLUMNS, Validated, validate_history
from service.settings import Settings

__all__ = [
    "LoadedEvents",
    "LoadedHistory",
    "TrainedModel",
    "default_events_path",
    "default_history_path",
    "latest_date",
    "load_history",
    "read_events",
    "train_and_save",
]


@dataclass(frozen=True)
class LoadedEvents:
    """Scans read from a file and checked against their orders.

    ``table`` holds the usable scans; ``rejects`` every scan left out with its line and
    reason (malformed, or dated before its order's shipment); exact duplicates and scans of
    orders absent from the orders are counted.
    """

    table: ScanTable
    rejects: pd.DataFrame
    path: Path
    sha256: str
    rows: int
    duplicates: int
    unknown_orders: int
    unknown_scans: int

    def summary(self) -> dict[str, Any]:
        """The counts, as recorded in a manifest or an evaluation."""
        return {
            "source": str(self.path),
            "sha256": self.sha256,
            "rows": self.rows,
            "scans_used": int(self.table.n_scans),
            "orders_with_scans": int((np.diff(self.table.offsets) > 0).sum()),
            "rows_rejected": len(self.rejects),
            "duplicates": self.duplicates,
            "unknown_orders": self.unknown_orders,
            "unknown_order_scans": self.unknown_scans,
        }

    def describe(self) -> str:
        """One line for the console."""
        parts = [
            f"{self.table.n_scans:,} scans of {self.summary()['orders_with_scans']:,} orders"
            f" read from {self.path}"
        ]
        if len(self.rejects):
            parts.append(f"{len(self.rejects):,} rejected")
        if self.duplicates:
            parts.append(f"{self.duplicates:,} exact duplicates counted once")
        if self.unknown_scans:
            parts.append(
                f"{self.unknown_scans:,} scans of {self.unknown_orders:,} orders not in the"
                " orders file (left out)"
            )
        return "; ".join(parts)


def read_events(path: Path, order_ids: np.ndarray, shipped_at: np.ndarray) -> LoadedEvents:
    """Read, validate and match scans to orders (``order_ids`` with their ``shipped_at``)."""
    frame = read_table(path)
    validated = validate_events(frame, drop_duplicates=False)
    table, duplicates = validated.packed()  # exact duplicates dropped while packing
    matched = match_events(table, order_ids, shipped_at)
    rejects = pd.concat([validated.rejects, matched.rejects], ignore_index=True).sort_values(
        "line", kind="stable"
    )
    return LoadedEvents(
        table=matched.table,
        rejects=rejects.reset_index(drop=True)[list(REJECT_COLUMNS)],
        path=path,
        sha256=file_sha256(path),
        rows=validated.n_rows,
        duplicates=duplicates,
        unknown_orders=matched.unknown_orders,
        unknown_scans=matched.unknown_scans,
    )


@dataclass(frozen=True)
class LoadedHistory:
    validated: Validated
    path: Path
    sha256: str
    generated_now: bool = False
    events: LoadedEvents | None = None


def default_history_path(settings: Settings) -> Path:
    return settings.data_dir / f"default_history_{settings.default_history_rows}.parquet"


def default_events_path(settings: Settings) -> Path:
    """The default history's carrier scans, generated with it."""
    return settings.data_dir / f"default_history_{settings.default_history_rows}.events.parquet"


def ensure_default_history(settings: Settings) -> tuple[Path, Path, bool]:
    """The bundled default history and its scans, generated deterministically on first use."""
    from data.generate import DEFAULT_AS_OF, DEFAULT_SEED, generate_shipments, write_generated

    path, events_path = default_history_path(settings), default_events_path(settings)
    if path.is_file() and events_path.is_file():
        return path, events_path, False
    made = generate_shipments(settings.default_history_rows, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF)
    write_generated(made.events, events_path, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF, kind="events")
    write_generated(made.frame, path, seed=DEFAULT_SEED, as_of=DEFAULT_AS_OF, kind="history")
    return path, events_path, True


def load_history(
    path: Path | None, settings: Settings, events_path: Path | None = None
) -> LoadedHistory:
    """Read and validate history and, given ``events_path``, its scans; ``path`` None means
    the default generated history, which brings its own scans unless ``events_path`` is
    given."""
    generated = False
    if path is None:
        path, default_events, generated = ensure_default_history(settings)
        events_path = events_path or default_events
    validated = validate_history(read_table(path))
    events = None
    if events_path is not None:
        valid = validated.valid
        events = read_events(
            events_path, valid["order_id"].to_numpy(dtype=object), valid["shipped_at"].to_numpy()
        )
    return LoadedHistory(
        validated=validated,
        path=path,
        sha256=file_sha256(path),
        generated_now=generated,
        events=events,
    )


def generated_scan_truth(
    loaded: LoadedHistory,
) -> Callable[[pd.DataFrame, np.ndarray, np.ndarray], np.ndarray] | None:
    """The generator's true probabilities given scans, when both the history and its scans
    were made by ``generate`` (for the Bayes limit with scans); None otherwise."""
    from data.generate import read_generator_meta, true_survival_given_scans

    events = loaded.events
    if (
        events is None
        or not read_generator_meta(loaded.path)
        or not read_generator_meta(events.path)
    ):
        return None
    raw = read_table(events.path)

    def truth(frame: pd.DataFrame, decision_dates: np.ndarray, days: np.ndarray) -> np.ndarray:
        return true_survival_given_scans(frame, raw, decision_dates, days)

    return truth


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
    events_rejects_path: Path | None = None  # the scans left out, when there were any


def train_and_save(
    history_path: Path | None,
    directory: Path,
    settings: Settings,
    *,
    as_of: date | None = None,
    status: Callable[[str], AbstractContextManager[Any]] | None = None,
    events_path: Path | None = None,
) -> TrainedModel:
    """Read and validate history (and its scans), train as of ``as_of`` (default: its
    latest date), save the artifact into ``directory`` with the rejected history rows (and
    rejected scans) beside it.

    ``status(text)`` (e.g. a rich console's) shows each slow step while it runs.
    """
    from model.artifact import save_model
    from model.train import train_model

    def step(text: str) -> AbstractContextManager[Any]:
        return status(text) if status is not None else nullcontext()

    with step("reading history"):
        loaded = load_history(history_path, settings, events_path)
    valid = loaded.validated.valid
    if valid.empty:
        raise AdvisorError(f"{loaded.path}: no valid shipment rows to train on")
    cutoff = as_of or latest_date(valid)
    scans = loaded.events.table if loaded.events is not None else None
    with_scans = f" with {scans.n_scans:,} scans" if scans is not None else ""
    with step(f"training on {len(valid):,} shipments{with_scans} as of {cutoff}"):
        fitted = train_model(valid, cutoff, scans=scans)
    rejects = loaded.validated.rejects
    manifest = save_model(
        fitted,
        directory,
        keys=settings.signing_keys(),  # signed when a signing key is configured
        data_sha256=loaded.sha256,
        data_source=str(loaded.path),
        rows_rejected=len(rejects),
        events=loaded.events.summary() if loaded.events is not None else None,
    )
    rejects_path = None
    if len(rejects):
        rejects_path = directory / "history_rejects.csv"
        rejects.to_csv(rejects_path, index=False)
    events_rejects_path = None
    if loaded.events is not None and len(loaded.events.rejects):
        events_rejects_path = directory / "events_rejects.csv"
        loaded.events.rejects.to_csv(events_rejects_path, index=False)
    return TrainedModel(fitted, manifest, loaded, cutoff, rejects_path, events_rejects_path)
