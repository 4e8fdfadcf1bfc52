"""The fitted advisor model: hazard curves, calibration and the per-destination lag table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from model.calibration import PlattCalibrator
from model.events import ScanState, ScanTable
from model.features import Columns, EncodedFeatures, column, days_between, lookup, text_column
from model.hazard import DiscreteTimeHazard
from model.scans import LandmarkScanModel, state_at

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
    "last_milestone",
    "days_since_last_scan",
    "stalled",
)


@dataclass
class AdvisorModel:
    """What ``train`` produces and ``predict`` uses; saved as one joblib file with a manifest.

    ``lanes`` has one row per destination country seen in training (see
    :func:`model.train.lane_table`). ``model_version`` is set from the manifest on load.
    ``scans`` (with its own ``scan_calibrator``) answers for orders that have carrier scans
    when the model was trained with them; orders without scans always get the lane-only
    ``hazard`` model with ``calibrator``.
    """

    hazard: DiscreteTimeHazard
    calibrator: PlattCalibrator
    lanes: pd.DataFrame
    training: dict[str, Any] = field(default_factory=dict)
    model_version: str = "unsaved"
    scans: LandmarkScanModel | None = None
    scan_calibrator: PlattCalibrator | None = None

    def conditional_late(
        self,
        features: EncodedFeatures,
        elapsed: np.ndarray,
        deadline_days: np.ndarray,
        extension_days: int = 30,
        state: ScanState | None = None,
    ) -> np.ndarray:
        """Calibrated (p_late, p_late_after_extension) per row, shape (n, 2), for parcels
        undelivered after ``elapsed`` days whose deadline is ``deadline_days`` after shipment.

        With a scan ``state``, rows with scans get the scan model (when the model has one);
        a latest scan saying the parcel is returning, returned or lost gives 1 and 1.
        """
        deadline_days = np.asarray(deadline_days, dtype=np.int64)
        horizons = np.column_stack([deadline_days, deadline_days + extension_days])
        if len(horizons) == 0:
            return np.zeros((0, 2))
        raw = self.hazard.conditional_survival(features, elapsed, horizons)
        calibrated = self.calibrator.transform(raw)
        if state is not None:
            # Terminal and delivered scans decide the answer below: no model needed there.
            scanned = np.flatnonzero(
                state.has_scans & ~state.terminal & np.isnan(state.delivered_day)
            )
            if self.scans is not None and len(scanned):
                rows = state.take(scanned)
                scan_raw = self.scans.predict(
                    features.take(scanned), rows, elapsed[scanned], horizons[scanned], self.hazard
                )
                scan_calibrator = self.scan_calibrator or PlattCalibrator()
                calibrated[scanned] = scan_calibrator.transform(scan_raw)
            calibrated[state.terminal] = 1.0
        calibrated[:, 1] = np.minimum(calibrated[:, 1], calibrated[:, 0])
        return calibrated

    def predict(
        self,
        orders: pd.DataFrame,
        as_of: date,
        *,
        extension_days: int = 30,
        scans: ScanTable | None = None,
    ) -> pd.DataFrame:
        """Late-arrival probabilities for validated open orders, seen at ``as_of``.

        ``p_late`` = P(arrives after deadline | not delivered by as_of, scans by as_of) and
        ``p_late_after_extension`` the same after ``deadline + extension_days``; both are 0
        for an order delivered by ``as_of`` (by its ``delivered_at`` or a ``delivered``
        scan). Output rows align with ``orders``.
        """
        columns = self.predict_columns(orders, as_of, extension_days=extension_days, scans=scans)
        return pd.DataFrame(columns, columns=list(PREDICTION_COLUMNS), index=orders.index)

    def predict_columns(
        self,
        orders: Columns,
        as_of: date,
        *,
        extension_days: int = 30,
        scans: ScanTable | None = None,
        scan_rows: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """:meth:`predict` on a frame or a dict of column arrays, as a dict of arrays
        (:data:`PREDICTION_COLUMNS`); what the service and :meth:`predict` both call.

        ``scans`` holds the orders' carrier scans (any order may have none), found by
        ``order_id`` or, given ``scan_rows``, by each row's index in the table (-1: none).
        Only scans dated on or before ``as_of`` are read.
        """
        shipped = column(orders, "shipped_at").astype("datetime64[ns]", copy=False)
        as_of_ns = np.datetime64(as_of, "ns")
        elapsed = days_between(np.full(len(shipped), as_of_ns), shipped)
        deadline_days = days_between(column(orders, "deadline"), shipped)
        delivered_at = column(orders, "delivered_at").astype("datetime64[ns]", copy=False)
        delivered = ~np.isnat(delivered_at) & (delivered_at <= as_of_ns)
        features = self.hazard.encoder_.transform(orders, extension_days=extension_days)
        state = None
        if scans is not None:
            as_of_day = np.full(len(shipped), np.datetime64(as_of, "D").astype(np.int64))
            state = state_at(scans, column(orders, "order_id"), shipped, as_of_day, scan_rows)
            delivered |= ~np.isnan(state.delivered_day)
        calibrated = self.conditional_late(
            features, elapsed, deadline_days, extension_days, state=state
        )
        calibrated[delivered] = 0.0
        n = len(shipped)
        if state is None:
            last_milestone = np.full(n, -1, dtype=np.int64)
            since = np.full(n, np.nan)
            stalled = np.zeros(n, dtype=bool)
        else:
            last_milestone = state.last_milestone
            since = state.days_since_last_scan
            stalled = (
                (
                    self.scans.stalled(features, state, self.hazard)
                    if self.scans is not None
                    else np.zeros(n, dtype=bool)
                )
                & ~delivered
                & ~state.terminal
            )
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
            "last_milestone": last_milestone,
            "days_since_last_scan": since,
            "stalled": stalled,
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
