"""Per-lane Kaplan-Meier baseline: the strong simple estimate to compare the model with.

One product-limit survival curve per (country, shipping method) lane, on the same daily
grid and the same censoring as the hazard model; a lane never seen falls back to the curve
of all shipments. No pooling: a lane with ten shipments gets whatever its ten say.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from model.hazard import conditional_from_curves, observed_durations
from model.params import Params

__all__ = ["LaneKaplanMeier"]


class LaneKaplanMeier(Params):
    """Kaplan-Meier survival per lane; ``lanes`` picks the columns that define a lane."""

    def __init__(
        self,
        *,
        horizon_days: int = 256,
        lanes: tuple[str, ...] = ("destination_country", "shipping_method"),
    ) -> None:
        self.horizon_days = horizon_days
        self.lanes = lanes

    def _lane_labels(self, frame: pd.DataFrame) -> pd.Series:
        labels = frame[self.lanes[0]].astype(str)
        for column in self.lanes[1:]:
            labels = labels + "|" + frame[column].astype(str)
        return labels

    def fit(self, history: pd.DataFrame, as_of: date) -> LaneKaplanMeier:
        known = history.loc[history["shipped_at"] <= pd.Timestamp(as_of)]
        duration, event = observed_durations(known, as_of)
        horizon = self.horizon_days
        event = event & (duration < horizon)
        duration = np.clip(duration, 0, horizon - 1)
        labels = self._lane_labels(known)
        self.lane_index_ = {lane: i + 1 for i, lane in enumerate(sorted(labels.unique()))}
        lane = labels.map(self.lane_index_).to_numpy(dtype=np.int64)
        n_lanes = len(self.lane_index_) + 1
        # Row 0 is the pooled curve of all shipments.
        deaths = np.zeros((n_lanes, horizon))
        exits = np.zeros((n_lanes, horizon))
        for target in (np.zeros(len(lane), dtype=np.int64), lane):
            np.add.at(deaths, (target[event], duration[event]), 1.0)
            np.add.at(exits, (target, duration), 1.0)
        at_risk = np.cumsum(exits[:, ::-1], axis=1)[:, ::-1]
        hazard = np.divide(deaths, at_risk, out=np.zeros_like(deaths), where=at_risk > 0)
        self.curves_ = np.cumprod(1.0 - hazard, axis=1)
        self.lane_shipments_ = exits.sum(axis=1)
        return self

    def predict_conditional(
        self, frame: pd.DataFrame, elapsed: np.ndarray, horizons: np.ndarray
    ) -> np.ndarray:
        """``P(T > horizon | T > elapsed)`` from the row's lane curve (pooled if unseen)."""
        keys = self._lane_labels(frame).map(self.lane_index_).fillna(0).to_numpy(dtype=np.int64)
        return conditional_from_curves(
            lambda unique: self.curves_[unique], keys, elapsed, horizons, self.horizon_days
        )
