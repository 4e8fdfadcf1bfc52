"""The fitted advisor model: hazard curves, calibration and the per-destination lag table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from model.calibration import PlattCalibrator
from model.features import Columns, EncodedFeatures, column, days_between, lookup, text_column
from model.hazard import DiscreteTimeHazard

__all__ = ["PREDICTION_COLUMNS", "AdvisorModel"]

PREDICTION_COLUMNS = (
    "p_late",
    "p_late_after_extension",
    "elapsed_days",
    "days_remaining",
    "delivered",
    "unseen_country",
    "sparse_lane",
    "structural_lag",
)


@dataclass
class AdvisorModel:
    """What ``train`` produces and ``predict`` uses; saved as one joblib file with a manifest.

    ``lanes`` has one row per destination country seen in training (see
    :func:`model.train.lane_table`). ``model_version`` is set from the manifest on load.
    """

    hazard: DiscreteTimeHazard
    calibrator: PlattCalibrator
    lanes: pd.DataFrame
    training: dict[str, Any] = field(default_factory=dict)
    model_version: str = "unsaved"

    def conditional_late(
        self,
        features: EncodedFeatures,
        elapsed: np.ndarray,
        deadline_days: np.ndarray,
        extension_days: int = 30,
    ) -> np.ndarray:
        """Calibrated (p_late, p_late_after_extension) per row, shape (n, 2), for parcels
        undelivered after ``elapsed`` days whose deadline is ``deadline_days`` after shipment."""
        deadline_days = np.asarray(deadline_days, dtype=np.int64)
        horizons = np.column_stack([deadline_days, deadline_days + extension_days])
        if len(horizons) == 0:
            return np.zeros((0, 2))
        raw = self.hazard.conditional_survival(features, elapsed, horizons)
        calibrated = self.calibrator.transform(raw)
        calibrated[:, 1] = np.minimum(calibrated[:, 1], calibrated[:, 0])
        return calibrated

    def predict(
        self, orders: pd.DataFrame, as_of: date, *, extension_days: int = 30
    ) -> pd.DataFrame:
        """Late-arrival probabilities for validated open orders, seen at ``as_of``.

        ``p_late`` = P(arrives after deadline | not delivered by as_of) and
        ``p_late_after_extension`` the same after ``deadline + extension_days``; both are 0
        for an order delivered by ``as_of``. Output rows align with ``orders``.
        """
        columns = self.predict_columns(orders, as_of, extension_days=extension_days)
        return pd.DataFrame(columns, columns=list(PREDICTION_COLUMNS), index=orders.index)

    def predict_columns(
        self, orders: Columns, as_of: date, *, extension_days: int = 30
    ) -> dict[str, np.ndarray]:
        """:meth:`predict` on a frame or a dict of column arrays, as a dict of arrays
        (:data:`PREDICTION_COLUMNS`); what the service and :meth:`predict` both call."""
        shipped = column(orders, "shipped_at").astype("datetime64[ns]", copy=False)
        as_of_ns = np.datetime64(as_of, "ns")
        elapsed = days_between(np.full(len(shipped), as_of_ns), shipped)
        deadline_days = days_between(column(orders, "deadline"), shipped)
        delivered_at = column(orders, "delivered_at").astype("datetime64[ns]", copy=False)
        delivered = ~np.isnat(delivered_at) & (delivered_at <= as_of_ns)
        features = self.hazard.encoder_.transform(orders, extension_days=extension_days)
        calibrated = self.conditional_late(features, elapsed, deadline_days, extension_days)
        calibrated[delivered] = 0.0
        return {
            "p_late": calibrated[:, 0],
            "p_late_after_extension": calibrated[:, 1],
            "elapsed_days": elapsed,
            "days_remaining": deadline_days - elapsed,
            "delivered": delivered,
            "unseen_country": features.unseen_country,
            "sparse_lane": features.sparse_lane,
            "structural_lag": lookup(
                text_column(orders, "destination_country"), self._structural_lag_codes()
            ).astype(bool),
        }

    def _structural_lag_codes(self) -> dict[str, int]:
        """``{country: 0/1}`` of the lane table, built once (not pickled)."""
        codes: dict[str, int] | None = self.__dict__.get("_lag_codes")
        if codes is None:
            codes = {str(k): int(v) for k, v in self.lanes["structural_lag"].items()}
            self.__dict__["_lag_codes"] = codes
        return codes

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_lag_codes", None)  # derived from ``lanes``; saved artifacts stay the same
        return state
