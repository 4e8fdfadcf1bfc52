"""The one scoring function: validated open orders in, recommendations out.

:func:`score` decides, once, for the batch engines and the HTTP API alike. Its
:class:`Scores` keep the text columns as codes: the batch engines build their Arrow output
from them (:func:`service.batch.engine.scored_table`), :func:`score_columns` gives NumPy
arrays (the HTTP API, on column arrays built from checked requests: a DataFrame costs more
than the scoring itself for the few dozen orders of a micro-batch) and :func:`score_frame`
a DataFrame. They can never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa

from model.events import ScanTable, milestone_names
from model.features import Columns, column
from model.predictor import AdvisorModel
from model.schema import validate_open_orders
from service.policy import ACTIONS, Decisions, PolicyConfig, decide

__all__ = [
    "SCORED_COLUMNS",
    "ScoredBatch",
    "Scores",
    "score",
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


@dataclass(frozen=True)
class Scores:
    """Recommendations for a batch of validated orders, aligned with them, before their text
    columns are built: :meth:`columns` gives them as NumPy arrays (:data:`SCORED_COLUMNS`),
    :func:`service.batch.engine.scored_table` as Arrow strings straight from the codes."""

    order_id: np.ndarray | pa.Array | pa.ChunkedArray
    decisions: Decisions
    numbers: dict[str, np.ndarray]  # the numeric and date columns of SCORED_COLUMNS
    last_milestone: np.ndarray  # codes into model.events.MILESTONES, -1 without scans
    model_version: str

    def __len__(self) -> int:
        return len(self.decisions.action_code)

    def columns(self) -> dict[str, np.ndarray]:
        """:data:`SCORED_COLUMNS` as arrays; text columns as object arrays."""
        order_id = self.order_id
        if isinstance(order_id, pa.Array | pa.ChunkedArray):
            order_id = order_id.to_numpy(zero_copy_only=False)
        model_version = np.empty(len(self), dtype=object)
        model_version.fill(self.model_version)  # np.full is ~20x slower for objects
        text = {
            "order_id": np.asarray(order_id).astype(object, copy=False),
            "action": self.decisions.action,
            "reasons": self.decisions.reasons,
            "model_version": model_version,
            "last_milestone": milestone_names(self.last_milestone),
        }
        return {name: text[name] if name in text else self.numbers[name] for name in SCORED_COLUMNS}


def score(
    orders: Columns,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    scans: ScanTable | None = None,
    scan_rows: np.ndarray | None = None,
) -> Scores:
    """Recommend an action for each validated open order (a validated frame or the same
    columns as arrays): the one scoring function behind the batch engines and the API.

    ``scans`` holds the orders' carrier scans (checked against them; any order may have
    none), found by ``order_id`` or by ``scan_rows`` (see
    :meth:`model.predictor.AdvisorModel.predict_columns`). ``new_deadline`` and
    ``respond_by`` are ``datetime64[ns]`` midnights or NaT; ``last_milestone`` is -1 and
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
    extend = decisions.action_code == ACTIONS.index("extend")
    respond = decisions.action_code == ACTIONS.index("respond_to_dispute")
    deadline = column(orders, "deadline").astype("datetime64[ns]", copy=False)
    not_a_date = np.datetime64("NaT", "ns")
    order_id = orders["order_id"]
    if not isinstance(order_id, pa.Array | pa.ChunkedArray):
        order_id = column(orders, "order_id")
    numbers = {
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
        "days_since_last_scan": predictions["days_since_last_scan"].astype(np.float64),
    }
    return Scores(
        order_id=order_id,
        decisions=decisions,
        numbers=numbers,
        last_milestone=np.asarray(predictions["last_milestone"], dtype=np.int64),
        model_version=model.model_version,
    )


def score_columns(
    orders: Columns,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    scans: ScanTable | None = None,
    scan_rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """:func:`score` as :data:`SCORED_COLUMNS` arrays (text columns as objects)."""
    return score(orders, model, policy, as_of, scans, scan_rows).columns()


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
