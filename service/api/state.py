"""The loaded model as one immutable snapshot, and the holder that swaps it atomically.

A request takes the current snapshot once and uses only it, so a reload in the middle of a
request never mixes two models. A reload loads and probes the new model aside, then replaces
the holder's reference under a lock: until then, and if it fails, the old model serves.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from model.artifact import load_model
from model.errors import AdvisorError, ArtifactError, ModelNotFoundError
from model.predictor import AdvisorModel
from model.signing import SigningKeys
from service.api.frames import orders_columns
from service.api.schemas import OpenOrder
from service.policy import PolicyConfig
from service.scoring import score_columns

__all__ = ["LoadedModel", "ModelHolder", "ReloadRefused", "load_snapshot"]


class ReloadRefused(AdvisorError):
    """A reload could not load or use the requested model; the previous one keeps serving."""


@dataclass(frozen=True)
class LoadedModel:
    """Everything a request needs to score: model, its manifest, policy, where it came from."""

    model: AdvisorModel
    manifest: dict[str, Any]
    policy: PolicyConfig
    model_dir: Path
    lanes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def model_version(self) -> str:
        return self.model.model_version


_PROBE = OpenOrder(
    order_id="probe",
    destination_country="US",
    shipping_method="probe",
    shipped_at=date(2026, 1, 2),
    deadline=date(2026, 2, 1),
)


def lane_rows(model: AdvisorModel) -> dict[str, dict[str, Any]]:
    """The model's per-destination lag table as JSON-ready rows keyed by country code."""
    rows: dict[str, dict[str, Any]] = {}
    numbers = ("median_transit_days", "p90_transit_days", "late_share", "never_delivered_share")
    for country, lane in model.lanes.iterrows():
        row: dict[str, Any] = {"country": str(country), "shipments": int(lane["shipments"])}
        for name in numbers:
            value = float(lane[name])
            row[name] = value if value == value else None  # NaN (nothing delivered) -> null
        row["structural_lag"] = bool(lane["structural_lag"])
        rows[str(country)] = row
    return rows


WARM_CHUNK = 1000


def load_snapshot(
    model_dir: Path,
    policy: PolicyConfig,
    warm: Sequence[tuple[OpenOrder, date]] = (),
    *,
    keys: SigningKeys | None = None,
) -> LoadedModel:
    """Load and verify the artifact (its signature too, with ``keys``), then score a probe
    order with it (it must work).

    ``warm``: recently scored orders, scored once more with the new model before it serves,
    so its per-lane curve cache is filled for the lanes in use (no latency spike after a
    reload).
    """
    model, manifest = load_model(model_dir, keys=keys)
    try:
        score_columns(orders_columns([_PROBE]), model, policy, date(2026, 1, 20))
        lanes = lane_rows(model)
        by_date: dict[date, list[OpenOrder]] = {}
        for order, as_of in warm:
            by_date.setdefault(as_of, []).append(order)
        for as_of, orders in by_date.items():
            for start in range(0, len(orders), WARM_CHUNK):
                chunk = orders_columns(orders[start : start + WARM_CHUNK])
                score_columns(chunk, model, policy, as_of)
    except Exception as exc:  # a verified artifact that still cannot score
        raise ArtifactError(f"model in {model_dir} cannot score: {exc}") from None
    return LoadedModel(
        model=model, manifest=manifest, policy=policy, model_dir=model_dir, lanes=lanes
    )


class ModelHolder:
    """Holds the current :class:`LoadedModel` (or none yet); swaps it under a lock."""

    def __init__(self, loaded: LoadedModel | None = None) -> None:
        self._current = loaded
        self._swap_lock = threading.Lock()
        self._reload_lock = asyncio.Lock()

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def require(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise ModelNotFoundError("no model loaded yet; see GET /readyz")
        return loaded

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        """Put ``loaded`` in place; returns the previous snapshot."""
        with self._swap_lock:
            previous, self._current = self._current, loaded
        return previous

    async def reload(
        self,
        model_dir: Path,
        policy: PolicyConfig,
        warm: Sequence[tuple[OpenOrder, date]] = (),
        *,
        keys: SigningKeys | None = None,
    ) -> tuple[LoadedModel, str | None]:
        """Load ``model_dir`` off the event loop (verified with ``keys``, warmed on ``warm``)
        and swap it in; one reload at a time.

        Any failure raises :class:`ReloadRefused` and leaves the current model serving.
        """
        async with self._reload_lock:
            try:
                loaded = await asyncio.to_thread(load_snapshot, model_dir, policy, warm, keys=keys)
            except (AdvisorError, OSError, ValueError) as exc:
                raise ReloadRefused(f"reload refused, previous model kept: {exc}") from None
            previous = self.swap(loaded)
        return loaded, previous.model_version if previous else None
