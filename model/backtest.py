"""Decision points drawn from history, for honest time-based evaluation.

A *decision sample* is an order seen at ``deadline - days_before`` while still undelivered,
whose outcome (on time, within the extension, later or never) was known by ``as_of``.
Models are fitted with the history censored at a cut-off before every decision they are
scored on, so no sample is ever a training row.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from model.features import days_between

__all__ = ["OUTCOMES", "decision_samples"]

OUTCOMES = ("on_time", "within_extension", "beyond")


def decision_samples(
    history: pd.DataFrame,
    *,
    start: date,
    as_of: date,
    days_before: int = 4,
    extension_days: int = 30,
) -> pd.DataFrame:
    """Orders undelivered at ``deadline - days_before``, that moment falling after ``start``.

    Only decisions whose both outcomes were known by ``as_of`` are kept (deadline +
    extension on or before ``as_of``). Adds ``decision_at``, ``elapsed``, ``deadline_days``,
    ``late``, ``late_after_extension`` and ``outcome``.
    """
    decision_at = history["deadline"] - pd.Timedelta(days=days_before)
    last = pd.Timestamp(as_of) - pd.Timedelta(days=extension_days + days_before)
    delivered = history["delivered_at"].where(history["delivered_at"] <= pd.Timestamp(as_of))
    undelivered_then = delivered.isna() | (delivered > decision_at)
    chosen = (
        (decision_at > pd.Timestamp(start))
        & (decision_at <= last)
        & (decision_at >= history["shipped_at"])
        & undelivered_then
    )
    samples = history.loc[chosen].copy()
    samples["decision_at"] = decision_at[chosen]
    samples["elapsed"] = days_between(samples["decision_at"], samples["shipped_at"])
    samples["deadline_days"] = days_between(samples["deadline"], samples["shipped_at"])
    arrived = delivered[chosen]
    extended = samples["deadline"] + pd.Timedelta(days=extension_days)
    samples["late"] = (arrived.isna() | (arrived > samples["deadline"])).to_numpy()
    samples["late_after_extension"] = (arrived.isna() | (arrived > extended)).to_numpy()
    samples["outcome"] = np.select(
        [~samples["late"], ~samples["late_after_extension"]],
        [OUTCOMES[0], OUTCOMES[1]],
        default=OUTCOMES[2],
    )
    return samples.reset_index(drop=True)


def holdout_start(as_of: date, holdout_days: int) -> date:
    """The time-based split: models for the holdout know nothing after this date."""
    return as_of - timedelta(days=holdout_days)
