"""The one scoring function: validated open orders in, recommendations out.

The HTTP API, the batch CLI and the Dask engine all call :func:`score_frame` (or
:func:`score_raw`, which validates first), so the three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from model.predictor import AdvisorModel
from model.schema import validate_open_orders
from service.policy import PolicyConfig, decide

__all__ = ["SCORED_COLUMNS", "ScoredBatch", "score_frame", "score_raw"]

SCORED_COLUMNS = (
    "order_id",
    "action",
    "extend_by_days",
    "new_deadline",
    "days_remaining",
    "p_late",
    "p_late_after_extension",
    "respond_by",
    "reasons",
    "model_version",
)


def score_frame(
    orders: pd.DataFrame, model: AdvisorModel, policy: PolicyConfig, as_of: date
) -> pd.DataFrame:
    """Recommend an action for each validated open order (rows and order kept).

    Dates in the result (``new_deadline``, ``respond_by``) are midnight timestamps or NaT.
    """
    predictions = model.predict(orders, as_of, extension_days=policy.extension_days)
    in_dispute = orders["dispute_opened_at"].notna().to_numpy(dtype=bool)
    decisions = decide(
        p_late=predictions["p_late"].to_numpy(),
        p_after=predictions["p_late_after_extension"].to_numpy(),
        days_remaining=predictions["days_remaining"].to_numpy(),
        delivered=predictions["delivered"].to_numpy(),
        in_dispute=in_dispute,
        extensions=orders["extensions"].to_numpy(),
        config=policy,
        structural_lag=predictions["structural_lag"].to_numpy(),
        unseen_country=predictions["unseen_country"].to_numpy(),
        sparse_lane=predictions["sparse_lane"].to_numpy(),
    )
    extend = decisions.action == "extend"
    respond = decisions.action == "respond_to_dispute"
    extension = pd.Timedelta(days=policy.extension_days)
    respond_window = pd.Timedelta(days=policy.respond_within_days)
    return pd.DataFrame(
        {
            "order_id": orders["order_id"].to_numpy(dtype=object),
            "action": decisions.action,
            "extend_by_days": np.where(extend, policy.extension_days, 0).astype(np.int64),
            "new_deadline": (orders["deadline"] + extension).where(extend).to_numpy(),
            "days_remaining": predictions["days_remaining"].to_numpy(dtype=np.int64),
            "p_late": predictions["p_late"].to_numpy(dtype=np.float64),
            "p_late_after_extension": predictions["p_late_after_extension"].to_numpy(
                dtype=np.float64
            ),
            "respond_by": (orders["dispute_opened_at"] + respond_window).where(respond).to_numpy(),
            "reasons": decisions.reasons,
            "model_version": model.model_version,
        },
        columns=list(SCORED_COLUMNS),
    )


@dataclass(frozen=True)
class ScoredBatch:
    """Scored rows (input order) and rejected rows (line, order_id, column, reason)."""

    scored: pd.DataFrame
    rejects: pd.DataFrame


def score_raw(
    raw: pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    *,
    lines: np.ndarray | None = None,
) -> ScoredBatch:
    """Validate raw open orders, then score the rows that pass; every row ends up in one."""
    validated = validate_open_orders(raw, as_of=as_of, lines=lines)
    return ScoredBatch(
        scored=score_frame(validated.valid, model, policy, as_of), rejects=validated.rejects
    )
