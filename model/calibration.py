"""Calibration of conditional probabilities on a time-based holdout, and its metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PlattCalibrator", "calibration_table", "probability_metrics"]

_EPS = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass
class PlattCalibrator:
    """``p -> sigmoid(slope * logit(p) + intercept)``, monotone increasing by construction.

    Being monotone, one map applied to both ``p_late`` and ``p_late_after_extension`` keeps
    ``p_late_after_extension <= p_late``. Too few or one-sided samples keep the identity.
    """

    slope: float = 1.0
    intercept: float = 0.0
    n_samples: int = 0
    note: str = "identity"

    @classmethod
    def fit(cls, p: np.ndarray, outcome: np.ndarray, *, min_samples: int = 100) -> PlattCalibrator:
        outcome = np.asarray(outcome, dtype=bool)
        n = len(outcome)
        if n < min_samples or outcome.all() or not outcome.any():
            return cls(n_samples=n, note=f"identity: {n} holdout samples, too few to calibrate")
        from sklearn.linear_model import LogisticRegression  # training only: not at load

        reg = LogisticRegression(C=1e4).fit(_logit(p)[:, None], outcome)
        slope, intercept = float(reg.coef_[0, 0]), float(reg.intercept_[0])
        if slope <= 0:
            return cls(n_samples=n, note="identity: fitted slope not positive")
        return cls(slope=slope, intercept=intercept, n_samples=n, note="platt")

    def transform(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        if self.note != "platt":
            return p
        z = self.slope * _logit(p) + self.intercept
        calibrated = 1.0 / (1.0 + np.exp(-z))
        # Exact 0 and 1 (delivered; already past the horizon) are facts, not estimates.
        return np.where((p <= 0.0) | (p >= 1.0), p, calibrated)


def probability_metrics(p: np.ndarray, outcome: np.ndarray) -> dict[str, float | int | None]:
    """AUC, Brier score and base rate of probabilities against 0/1 outcomes."""
    from sklearn.metrics import brier_score_loss, roc_auc_score  # evaluation only

    outcome = np.asarray(outcome, dtype=bool)
    n = len(outcome)
    both = 0 < outcome.sum() < n
    return {
        "n": n,
        "positive_rate": float(outcome.mean()) if n else None,
        "mean_prediction": float(np.mean(p)) if n else None,
        "auc": float(roc_auc_score(outcome, p)) if both else None,
        "brier": float(brier_score_loss(outcome, np.clip(p, 0, 1))) if n else None,
    }


def calibration_table(p: np.ndarray, outcome: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean prediction against observed rate in equal-width probability bins (non-empty)."""
    p = np.asarray(p, dtype=np.float64)
    outcome = np.asarray(outcome, dtype=bool)
    index = np.minimum((p * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append(
                {
                    "bin_low": b / bins,
                    "bin_high": (b + 1) / bins,
                    "n": int(mask.sum()),
                    "mean_predicted": float(p[mask].mean()),
                    "observed_rate": float(outcome[mask].mean()),
                }
            )
    return rows
