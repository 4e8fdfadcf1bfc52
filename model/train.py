"""Training: fit on history censored at a time split, calibrate on later decisions, refit.

1. Fit the hazard model (and, with carrier scans, the scan model) on the history and scans
   as they were ``holdout_days`` before ``as_of``.
2. Score the decisions that fell after that split (orders undelivered 4 days before their
   deadline, outcomes known by ``as_of``), each with the scans dated on or before its own
   decision day; the earlier half calibrates, the later half measures. No holdout decision
   is a training row of the model that scored it.
3. Refit on all history up to ``as_of`` and keep the calibrations.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from model.backtest import decision_samples, holdout_start
from model.calibration import PlattCalibrator, calibration_table, probability_metrics
from model.events import ScanTable
from model.hazard import DiscreteTimeHazard, predict_conditional
from model.km import LaneKaplanMeier
from model.predictor import AdvisorModel
from model.scans import LandmarkScanModel, TooFewTrackedParcels, state_at

__all__ = ["TrainingConfig", "lane_table", "train_model"]


STRUCTURAL_LAG_MIN_SHIPMENTS = 100


@dataclass(frozen=True)
class TrainingConfig:
    """Knobs of training; ``hazard`` holds :class:`DiscreteTimeHazard` parameters and
    ``scans`` those of :class:`LandmarkScanModel`."""

    holdout_days: int = 150
    decision_days_before: int = 4
    extension_days: int = 30
    structural_lag_ratio: float = 1.5
    hazard: dict[str, Any] = field(default_factory=dict)
    scans: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def lane_table(
    history: pd.DataFrame,
    as_of: date,
    *,
    horizon_days: int = 256,
    structural_lag_ratio: float = 1.5,
) -> pd.DataFrame:
    """Per-destination lag: shipments, median/p90 transit of delivered parcels, late share.

    Transit quantiles come from a per-country Kaplan-Meier curve (censoring-aware), taken
    among parcels that arrive at all. ``structural_lag`` flags a destination whose 90th
    percentile exceeds ``structural_lag_ratio`` times that of all shipments, judged only on
    at least ``STRUCTURAL_LAG_MIN_SHIPMENTS`` shipments (a handful of parcels says little).
    """
    km = LaneKaplanMeier(horizon_days=horizon_days, lanes=("destination_country",))
    km.fit(history, as_of)

    def quantiles(curve: np.ndarray) -> tuple[float, float, float]:
        arrived = 1.0 - curve
        total = arrived[-1]
        if total <= 0:
            return float("nan"), float("nan"), float(curve[-1])
        median = int(np.searchsorted(arrived, 0.5 * total))
        p90 = int(np.searchsorted(arrived, 0.9 * total))
        return float(median), float(p90), float(curve[-1])

    _, pooled_p90, _ = quantiles(km.curves_[0])
    known = history.loc[history["deadline"] <= pd.Timestamp(as_of)]
    arrived = known["delivered_at"].where(known["delivered_at"] <= pd.Timestamp(as_of))
    late = arrived.isna() | (arrived > known["deadline"])
    late_share = late.groupby(known["destination_country"]).mean()
    rows = []
    for country, index in km.lane_index_.items():
        median, p90, never = quantiles(km.curves_[index])
        rows.append(
            {
                "country": country,
                "shipments": int(km.lane_shipments_[index]),
                "median_transit_days": median,
                "p90_transit_days": p90,
                "late_share": float(late_share.get(country, float("nan"))),
                "never_delivered_share": never,
                "structural_lag": bool(
                    p90 >= structural_lag_ratio * pooled_p90
                    and km.lane_shipments_[index] >= STRUCTURAL_LAG_MIN_SHIPMENTS
                ),
            }
        )
    return pd.DataFrame(rows).set_index("country").sort_values("shipments", ascending=False)


MIN_CALIBRATION_DECISIONS = 200


def _choose_calibration(raw: np.ndarray, outcomes: np.ndarray) -> PlattCalibrator:
    """A Platt map fitted on these decisions (both horizons stacked), kept only if it earns
    its place: at least ``MIN_CALIBRATION_DECISIONS`` decisions, and a lower Brier score
    than the raw model on the later half of them when fitted on the earlier half.
    Rows are in time order; the caller's test decisions are never looked at.
    """
    n = len(raw)
    if n < MIN_CALIBRATION_DECISIONS:
        return PlattCalibrator(n_samples=n, note=f"identity: {n} calibration decisions, too few")

    def stacked(rows: slice) -> tuple[np.ndarray, np.ndarray]:
        return raw[rows].T.reshape(-1), outcomes[rows].T.reshape(-1)

    early_p, early_y = stacked(slice(0, n // 2))
    late_p, late_y = stacked(slice(n // 2, n))
    trial = PlattCalibrator.fit(early_p, early_y)
    raw_brier = float(np.mean((late_p - late_y) ** 2))
    trial_brier = float(np.mean((trial.transform(late_p) - late_y) ** 2))
    if trial.note != "platt" or trial_brier >= raw_brier:
        return PlattCalibrator(
            n_samples=n,
            note=f"identity: calibration did not lower Brier ({trial_brier:.4f} vs raw"
            f" {raw_brier:.4f})",
        )
    return PlattCalibrator.fit(*stacked(slice(0, n)))


def _scan_model(
    config: TrainingConfig,
    history: pd.DataFrame,
    scans: ScanTable | None,
    as_of: date,
    hazard: DiscreteTimeHazard,
) -> LandmarkScanModel | None:
    """The scan model fitted at ``as_of``, or None without scans or too few tracked parcels."""
    if scans is None:
        return None
    model = LandmarkScanModel(extension_days=config.extension_days, **config.scans)
    try:
        return model.fit(history, scans, as_of, hazard)
    except TooFewTrackedParcels:
        return None


def _holdout(
    history: pd.DataFrame,
    as_of: date,
    config: TrainingConfig,
    hazard: DiscreteTimeHazard,
    scans: ScanTable | None,
) -> tuple[PlattCalibrator, PlattCalibrator | None, dict[str, Any]]:
    start = holdout_start(as_of, config.holdout_days)
    samples = decision_samples(
        history,
        start=start,
        as_of=as_of,
        days_before=config.decision_days_before,
        extension_days=config.extension_days,
    )
    info: dict[str, Any] = {"split_date": start.isoformat(), "decisions": len(samples)}
    if len(samples) < 20 or (history["shipped_at"] < pd.Timestamp(start)).sum() < 100:
        info["note"] = "holdout too small: probabilities left uncalibrated"
        identity = PlattCalibrator(n_samples=len(samples), note="identity: holdout too small")
        return identity, (identity if scans is not None else None), info
    early = hazard.clone().fit(history, start)
    early_scans = _scan_model(config, history, scans, start, early)
    horizons = np.column_stack(
        [samples["deadline_days"], samples["deadline_days"] + config.extension_days]
    )
    elapsed = samples["elapsed"].to_numpy()
    raw = predict_conditional(early, samples, elapsed, horizons)
    hazard_raw = raw.copy()
    scanned = np.zeros(len(samples), dtype=bool)  # decided by the scan model
    terminal = np.zeros(len(samples), dtype=bool)
    had_scans = np.zeros(len(samples), dtype=bool)  # a scan by the decision day
    if scans is not None:
        # Each decision sees only the scans dated on or before its own decision day.
        decision_day = samples["decision_at"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        state = state_at(
            scans, samples["order_id"].to_numpy(dtype=object), samples["shipped_at"], decision_day
        )
        delivered_by_scan = ~np.isnan(state.delivered_day)
        keep = ~delivered_by_scan  # tracking said delivered: no decision to take
        samples, raw, hazard_raw, elapsed, horizons = (
            samples.loc[keep].reset_index(drop=True),
            raw[keep],
            hazard_raw[keep],
            elapsed[keep],
            horizons[keep],
        )
        state = state.take(np.flatnonzero(keep))
        terminal = state.terminal
        had_scans = state.has_scans
        if early_scans is not None:
            scanned = state.has_scans & ~terminal
            rows = np.flatnonzero(scanned)
            raw[rows] = early_scans.predict(
                early.encoder_.transform(samples.iloc[rows]),
                state.take(rows),
                elapsed[rows],
                horizons[rows],
                early,
            )
    order = np.argsort(samples["decision_at"].to_numpy(), kind="stable")
    half = len(order) // 2
    fit_rows, test_rows = order[:half], order[half:]
    outcomes = samples[["late", "late_after_extension"]].to_numpy(dtype=bool)
    calibrator = _choose_calibration(hazard_raw[fit_rows], outcomes[fit_rows])
    scan_calibrator = None
    if scans is not None:
        scan_fit = fit_rows[scanned[fit_rows]]
        scan_calibrator = _choose_calibration(raw[scan_fit], outcomes[scan_fit])
    calibrated = calibrator.transform(raw)
    if scan_calibrator is not None:
        calibrated[scanned] = scan_calibrator.transform(raw[scanned])
    calibrated[terminal] = 1.0
    calibrated[:, 1] = np.minimum(calibrated[:, 1], calibrated[:, 0])
    late = samples["late"].to_numpy()
    after = samples["late_after_extension"].to_numpy()
    test = calibrated[test_rows]
    info.update(
        {
            "calibration_decisions": int(half),
            "test_decisions": len(test_rows),
            "test_from": str(samples["decision_at"].iloc[test_rows[0]].date())
            if len(test_rows)
            else None,
            "p_late_raw": probability_metrics(raw[test_rows, 0], late[test_rows]),
            "p_late": probability_metrics(test[:, 0], late[test_rows]),
            "p_late_after_extension": probability_metrics(test[:, 1], after[test_rows]),
            "calibration_table": calibration_table(test[:, 0], late[test_rows]),
        }
    )
    if scans is not None:
        with_scans = test_rows[had_scans[test_rows]]
        info["scans"] = {
            "model": "landmark" if early_scans is not None else "none: too few tracked parcels",
            "test_decisions_with_scans": len(with_scans),
            "p_late_with_scans": probability_metrics(calibrated[with_scans, 0], late[with_scans]),
            "p_late_after_extension_with_scans": probability_metrics(
                calibrated[with_scans, 1], after[with_scans]
            ),
            "p_late_after_extension_lane_only": probability_metrics(
                calibrator.transform(hazard_raw[with_scans])[:, 1],
                after[with_scans],
            ),
        }
    return calibrator, scan_calibrator, info


def train_model(
    history: pd.DataFrame,
    as_of: date,
    config: TrainingConfig | None = None,
    scans: ScanTable | None = None,
) -> AdvisorModel:
    """Fit, calibrate on a time-based holdout, and refit on everything up to ``as_of``.

    ``scans`` are the history's carrier scans (already checked against it); with them the
    model also learns from what the scans showed.
    """
    config = config or TrainingConfig()
    started = time.perf_counter()
    hazard = DiscreteTimeHazard(**config.hazard)
    calibrator, scan_calibrator, holdout = _holdout(history, as_of, config, hazard, scans)
    final = hazard.clone().fit(history, as_of).ship_training_tables(history, as_of)
    scan_model = _scan_model(config, history, scans, as_of, final)
    lanes = lane_table(
        history,
        as_of,
        horizon_days=final.horizon_days,
        structural_lag_ratio=config.structural_lag_ratio,
    )
    training = {
        "as_of": as_of.isoformat(),
        "rows": len(history),
        "rows_used": int(final.n_shipments_),
        "delivered_rows": int(final.n_events_),
        "person_days": int(final.n_person_days_),
        "config": config.as_dict(),
        "calibration": {
            "slope": calibrator.slope,
            "intercept": calibrator.intercept,
            "note": calibrator.note,
        },
        "holdout": holdout,
        "fit_seconds": round(time.perf_counter() - started, 2),
    }
    if scans is not None:
        training["scans"] = {
            "scans": int(scans.n_scans),
            "tracked_parcels": int(scan_model.n_tracked_parcels_) if scan_model else 0,
            "landmark_rows": int(scan_model.n_landmark_rows_) if scan_model else 0,
            "model": "landmark" if scan_model is not None else "none: too few tracked parcels",
            "calibration": {
                "slope": scan_calibrator.slope,
                "intercept": scan_calibrator.intercept,
                "note": scan_calibrator.note,
            }
            if scan_calibrator is not None
            else None,
        }
    return AdvisorModel(
        hazard=final,
        calibrator=calibrator,
        lanes=lanes,
        training=training,
        scans=scan_model,
        scan_calibrator=scan_calibrator if scan_model is not None else None,
    )
