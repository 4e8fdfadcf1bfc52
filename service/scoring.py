"""The one scoring function: validated open orders in, recommendations out.

:func:`score_columns` decides; the batch CLI and the Dask engine call it through
:func:`score_frame` (or :func:`score_raw`, which validates first), the HTTP API directly on
column arrays built from checked requests (a DataFrame costs more than the scoring itself
for the few dozen orders of a micro-batch). The three can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from model.events import ScanTable, milestone_names
from model.features import Columns, column
from model.predictor import AdvisorModel
from model.schema import validate_open_orders
from service.policy import PolicyConfig, decide

__all__ = [
    "SCORED_COLUMNS",
    "ScoredBatch",
    "score_columns",
    "score_frame",
    "score_raw",
    "scored_frame",
]

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
    "last_milestone",
    "days_since_last_scan",
)


def score_columns(
    orders: Columns,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    scans: ScanTable | None = None,
    scan_rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Recommend an action for each validated open order: :data:`SCORED_COLUMNS` as arrays
    aligned with ``orders`` (a validated frame or the same columns as arrays).

    ``scans`` holds the orders' carrier scans (checked against them; any order may have
    none), found by ``order_id`` or by ``scan_rows`` (see
    :meth:`model.predictor.AdvisorModel.predict_columns`). ``new_deadline`` and
    ``respond_by`` are ``datetime64[ns]`` midnights or NaT; ``last_milestone`` is None and
    ``days_since_last_scan`` NaN for an order without scans.
    """
    predictions = model.predict_columns(
        orders, as_of, extension_days=policy.extension_days, scans=scans, scan_rows=scan_rows
    )
    dispute_opened_at = column(orders, "dispute_opened_at").astype("datetime64[ns]", copy=False)
    decisions = decide(
        p_late=predictions["p_late"],
        p_after=predictions["p_late_after_extension"],
        days_remaining=predictions["days_remaining"],
        delivered=predictions["delivered"],
        in_dispute=~np.isnat(dispute_opened_at),
        extensions=column(orders, "extensions"),
        config=policy,
        structural_lag=predictions["structural_lag"],
        unseen_country=predictions["unseen_country"],
        sparse_lane=predictions["sparse_lane"],
        last_milestone=predictions["last_milestone"],
        stalled=predictions["stalled"],
    )
    extend = decisions.action == "extend"
    respond = decisions.action == "respond_to_dispute"
    deadline = column(orders, "deadline").astype("datetime64[ns]", copy=False)
    not_a_date = np.datetime64("NaT", "ns")
    n = len(deadline)
    model_version = np.empty(n, dtype=object)
    model_version.fill(model.model_version)  # np.full is ~20x slower for objects
    return {
        "order_id": column(orders, "order_id").astype(object, copy=False),
        "action": decisions.action,
        "extend_by_days": np.where(extend, policy.extension_days, 0).astype(np.int64),
        "new_deadline": np.where(
            extend, deadline + np.timedelta64(policy.extension_days, "D"), not_a_date
        ),
        "days_remaining": predictions["days_remaining"].astype(np.int64, copy=False),
        "p_late": predictions["p_late"].astype(np.float64, copy=False),
        "p_late_after_extension": predictions["p_late_after_extension"].astype(
            np.float64, copy=False
        ),
        "respond_by": np.where(
            respond,
            dispute_opened_at + np.timedelta64(policy.respond_within_days, "D"),
            not_a_date,
        ),
        "reasons": decisions.reasons,
        "model_version": model_version,
        "last_milestone": milestone_names(predictions["last_milestone"]),
        "days_since_last_scan": predictions["days_since_last_scan"].astype(np.float64),
    }


def score_frame(
    orders: pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    scans: ScanTable | None = None,
) -> pd.DataFrame:
    """:func:`score_columns` of a validated frame, as a frame (rows and order kept)."""
    return scored_frame(score_columns(orders, model, policy, as_of, scans))


def scored_frame(scored: dict[str, np.ndarray]) -> pd.DataFrame:
    """:func:`score_columns`' arrays as a frame; ``last_milestone`` a string column and
    ``days_since_last_scan`` a nullable integer one (both missing for orders without scans)."""
    frame = pd.DataFrame(scored, columns=list(SCORED_COLUMNS))
    frame["last_milestone"] = pd.Series(scored["last_milestone"], dtype="str")
    frame["days_since_last_scan"] = pd.array(
        np.round(scored["days_since_last_scan"]), dtype="Int64"
    )
    return frame


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
    scans: ScanTable | None = None,
) -> ScoredBatch:
    """Validate raw open orders, then score the rows that pass; every row ends up in one."""
    validated = validate_open_orders(raw, as_of=as_of, lines=lines)
    return ScoredBatch(
        scored=score_frame(validated.valid, model, policy, as_of, scans),
        rejects=validated.rejects,
    )
