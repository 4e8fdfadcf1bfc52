"""Time-based backtest: the policy's decision cost beside simple rules and baselines.

Everything the models know stops at the split date ``as_of - holdout_days``; they are scored
on the orders that reached their decision point (``act_within_days - 1`` days before the
deadline, still undelivered) after it, with outcomes known by ``as_of``. Strategies:

- ``policy``: the advisor (hazard model, scan model when scans are given, calibration and
  the expected-cost policy); each decision sees only scans dated on or before its day;
- ``policy_without_scans`` (with scans only): the same advisor ignoring the scans;
- ``never_act``; ``extend_all_in_window`` (the usual ERP rule); ``extend_brazil_only``;
- ``policy_kaplan_meier``: the same policy fed by a per-lane Kaplan-Meier estimate;
- ``bayes_limit`` (history made by ``generate`` only): the policy fed the generator's true
  probabilities given the days travelled, the best any estimate without scans can do;
- ``bayes_limit_with_scans`` (generated history and scans): the same given the scans too.

Costs are in units of order value. ``realised`` uses what actually happened; ``expected``
(generated data only) weighs each outcome by its true probability, which removes the
outcome noise and is what the savings-captured target is measured on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.backtest import OUTCOMES, decision_samples, holdout_start
from model.calibration import calibration_table, probability_metrics
from model.events import ScanState, ScanTable, milestone_names
from model.km import LaneKaplanMeier
from model.predictor import AdvisorModel
from model.scans import state_at
from model.train import TrainingConfig, lane_table, train_model
from service.policy import PolicyConfig, decide

__all__ = [
    "STRATEGIES",
    "BacktestResult",
    "ScanTruthFn",
    "TruthFn",
    "plot_evaluation",
    "run_backtest",
]

STRATEGIES = (
    "policy",
    "policy_without_scans",
    "never_act",
    "extend_all_in_window",
    "extend_brazil_only",
    "policy_kaplan_meier",
    "bayes_limit",
    "bayes_limit_with_scans",
)
_CHOICE_INDEX = {"none": 0, "extend": 1, "escalate": 2}

TruthFn = Callable[[pd.DataFrame, np.ndarray], np.ndarray]
"""``truth(frame, days)``: true P(T > days) per row (and column) of a generated history."""
ScanTruthFn = Callable[[pd.DataFrame, np.ndarray, np.ndarray], np.ndarray]
"""``truth(frame, decision_dates, days)``: true P(T > days | T > e, scans dated by the
decision date) per row and column of a generated history with generated scans."""


@dataclass
class BacktestResult:
    """JSON-able ``summary``, one row per decision in ``samples``, the lag table in ``lanes``."""

    summary: dict[str, Any]
    samples: pd.DataFrame
    lanes: pd.DataFrame
    model: AdvisorModel | None = field(default=None, repr=False)


def _policy_actions(p: np.ndarray, samples: pd.DataFrame, policy: PolicyConfig) -> np.ndarray:
    n = len(samples)
    decisions = decide(
        p_late=p[:, 0],
        p_after=p[:, 1],
        days_remaining=(samples["deadline_days"] - samples["elapsed"]).to_numpy(),
        delivered=np.zeros(n, dtype=bool),
        in_dispute=np.zeros(n, dtype=bool),
        extensions=np.zeros(n, dtype=np.int64),
        config=policy,
    )
    return decisions.action


def _true_conditional(truth: TruthFn, samples: pd.DataFrame, extension_days: int) -> np.ndarray:
    elapsed = samples["elapsed"].to_numpy()
    deadline = samples["deadline_days"].to_numpy()
    survival = truth(samples, np.column_stack([elapsed, deadline, deadline + extension_days]))
    return np.clip(survival[:, 1:] / np.maximum(survival[:, [0]], 1e-300), 0.0, 1.0)


def run_backtest(
    history: pd.DataFrame,
    *,
    as_of: date,
    policy: PolicyConfig | None = None,
    config: TrainingConfig | None = None,
    holdout_days: int = 150,
    truth: TruthFn | None = None,
    scans: ScanTable | None = None,
    scan_truth: ScanTruthFn | None = None,
) -> BacktestResult:
    """Fit at the split, decide every later decision point, and cost each strategy.

    With ``scans`` (the history's, checked against it) the model learns from scans dated up
    to the split, and each decision reads those dated up to its own decision day."""
    policy = policy or PolicyConfig()
    config = config or TrainingConfig()
    start = holdout_start(as_of, holdout_days)
    days_before = policy.act_within_days - 1
    samples = decision_samples(
        history,
        start=start,
        as_of=as_of,
        days_before=days_before,
        extension_days=policy.extension_days,
    )
    if samples.empty:
        raise ValueError(
            f"no decision points between {start} and {as_of}: the history is too short"
            f" for a {holdout_days}-day backtest"
        )
    state: ScanState | None = None
    if scans is not None:
        decision_day = samples["decision_at"].to_numpy(dtype="datetime64[D]").astype(np.int64)
        state = state_at(
            scans, samples["order_id"].to_numpy(dtype=object), samples["shipped_at"], decision_day
        )
        undelivered = np.isnan(state.delivered_day)  # tracking said delivered: no decision
        samples = samples.loc[undelivered].reset_index(drop=True)
        state = state.take(np.flatnonzero(undelivered))
    model = train_model(history, start, config, scans=scans)
    features = model.hazard.encoder_.transform(samples)
    elapsed = samples["elapsed"].to_numpy()
    deadline_days = samples["deadline_days"].to_numpy()
    p_model = model.conditional_late(
        features, elapsed, deadline_days, policy.extension_days, state=state
    )
    p_lane = (
        model.conditional_late(features, elapsed, deadline_days, policy.extension_days)
        if state is not None
        else p_model
    )
    km = LaneKaplanMeier(horizon_days=model.hazard.horizon_days).fit(history, start)
    deadline = samples["deadline_days"].to_numpy()
    p_km = km.predict_conditional(
        samples, elapsed, np.column_stack([deadline, deadline + policy.extension_days])
    )
    n = len(samples)
    actions: dict[str, np.ndarray] = {
        "policy": _policy_actions(p_model, samples, policy),
        **(
            {"policy_without_scans": _policy_actions(p_lane, samples, policy)}
            if state is not None
            else {}
        ),
        "never_act": np.full(n, "none", dtype=object),
        "extend_all_in_window": np.full(n, "extend", dtype=object),
        "extend_brazil_only": np.where(
            samples["destination_country"].to_numpy() == "BR", "extend", "none"
        ).astype(object),
        "policy_kaplan_meier": _policy_actions(p_km, samples, policy),
    }
    p_true = _true_conditional(truth, samples, policy.extension_days) if truth else None
    if p_true is not None:
        actions["bayes_limit"] = _policy_actions(p_true, samples, policy)
    p_true_scans = None
    if scan_truth is not None and state is not None:
        p_true_scans = np.clip(
            scan_truth(
                samples,
                samples["decision_at"].to_numpy(dtype="datetime64[D]"),
                np.column_stack([deadline_days, deadline_days + policy.extension_days]),
            ),
            0.0,
            1.0,
        )
        actions["bayes_limit_with_scans"] = _policy_actions(p_true_scans, samples, policy)
    # Expected costs weigh outcomes by the most informed truth available.
    p_expect = p_true_scans if p_true_scans is not None else p_true

    costs = policy.cost_matrix()
    outcome_index = pd.Categorical(samples["outcome"], categories=OUTCOMES).codes
    table = samples[
        ["order_id", "destination_country", "shipping_method", "decision_at", "outcome"]
    ].copy()
    table["p_late"], table["p_late_after_extension"] = p_model[:, 0], p_model[:, 1]
    table["p_late_km"], table["p_late_after_extension_km"] = p_km[:, 0], p_km[:, 1]
    if p_true is not None:
        table["p_late_true"], table["p_late_after_extension_true"] = p_true[:, 0], p_true[:, 1]
    if p_true_scans is not None:
        table["p_late_true_scans"] = p_true_scans[:, 0]
        table["p_late_after_extension_true_scans"] = p_true_scans[:, 1]
    if state is not None:
        table["last_milestone"] = milestone_names(state.last_milestone)
        table["p_late_lane_only"] = p_lane[:, 0]
        table["p_late_after_extension_lane_only"] = p_lane[:, 1]
    if p_expect is not None:
        true_outcomes = np.column_stack(
            [1 - p_expect[:, 0], p_expect[:, 0] - p_expect[:, 1], p_expect[:, 1]]
        )
    strategy_rows = []
    for name, chosen in actions.items():
        index = np.array([_CHOICE_INDEX[a] for a in chosen], dtype=np.int64)
        realised = costs[index, outcome_index]
        table[f"action_{name}"] = chosen
        row: dict[str, Any] = {
            "strategy": name,
            "realised_cost": float(realised.sum()),
            "realised_cost_per_order": float(realised.mean()),
            "extend": int((index == 1).sum()),
            "escalate": int((index == 2).sum()),
            "none": int((index == 0).sum()),
        }
        if p_expect is not None:
            row["expected_cost"] = float((costs[index] * true_outcomes).sum())
        strategy_rows.append(row)
    strategies = pd.DataFrame(strategy_rows).set_index("strategy")
    summary: dict[str, Any] = {
        "as_of": as_of.isoformat(),
        "split_date": start.isoformat(),
        "decision_days_before_deadline": days_before,
        "decisions": n,
        "outcomes": samples["outcome"].value_counts().reindex(OUTCOMES, fill_value=0).to_dict(),
        "p_late": probability_metrics(p_model[:, 0], samples["late"].to_numpy()),
        "p_late_after_extension": probability_metrics(
            p_model[:, 1], samples["late_after_extension"].to_numpy()
        ),
        "p_late_kaplan_meier": probability_metrics(p_km[:, 0], samples["late"].to_numpy()),
        "calibration_table": calibration_table(p_model[:, 0], samples["late"].to_numpy()),
        "strategies": strategies.reset_index().to_dict(orient="records"),
        "savings_captured": _savings_captured(strategies, "bayes_limit"),
    }
    if p_true is not None:
        summary["p_late_true"] = probability_metrics(p_true[:, 0], samples["late"].to_numpy())
    if state is not None:
        summary["scans"] = _scan_summary(samples, state, p_model, p_lane, p_true_scans)
        summary["scans"]["savings_captured_with_scans"] = _savings_captured(
            strategies, "bayes_limit_with_scans"
        )
        summary["scans"]["tracking_gain_captured"] = _tracking_gain(strategies)
    lanes = lane_table(history, as_of, horizon_days=model.hazard.horizon_days)
    summary["lanes"] = lanes.reset_index().to_dict(orient="records")
    return BacktestResult(summary=summary, samples=table, lanes=lanes, model=model)


def _scan_summary(
    samples: pd.DataFrame,
    state: ScanState,
    p_model: np.ndarray,
    p_lane: np.ndarray,
    p_true_scans: np.ndarray | None,
) -> dict[str, Any]:
    """What the scans change: probability quality with and without them on the decisions
    that had scans, and ``p_late_after_extension`` by the last milestone seen."""
    late = samples["late"].to_numpy()
    after = samples["late_after_extension"].to_numpy()
    has = state.has_scans
    out: dict[str, Any] = {
        "decisions_with_scans": int(has.sum()),
        "decisions_without_scans": int((~has).sum()),
        "p_late_with_scans": probability_metrics(p_model[has, 0], late[has]),
        "p_late_lane_only": probability_metrics(p_lane[has, 0], late[has]),
        "p_late_after_extension_with_scans": probability_metrics(p_model[has, 1], after[has]),
        "p_late_after_extension_lane_only": probability_metrics(p_lane[has, 1], after[has]),
    }
    milestone = pd.Series(milestone_names(state.last_milestone)).fillna("(no scan)")
    frame = pd.DataFrame(
        {
            "last_milestone": milestone,
            "p_with_scans": p_model[:, 1],
            "p_lane_only": p_lane[:, 1],
            "observed": after,
            **({"p_true": p_true_scans[:, 1]} if p_true_scans is not None else {}),
        }
    )
    grouped = frame.groupby("last_milestone", sort=False)
    table = grouped.mean().join(grouped.size().rename("decisions"))
    out["by_last_milestone"] = [
        {"last_milestone": name, **{k: float(v) for k, v in row.items()}}
        for name, row in table.sort_values("decisions", ascending=False).iterrows()
    ]
    return out


def _tracking_gain(strategies: pd.DataFrame) -> float | None:
    """(cost of the best decisions without scans - the policy's) / (that - the best with
    scans): the share of what scans can save that the policy captures."""
    names = {"bayes_limit", "bayes_limit_with_scans", "policy"}
    if "expected_cost" not in strategies or not names <= set(strategies.index):
        return None
    without = strategies.loc["bayes_limit", "expected_cost"]
    gain = without - strategies.loc["bayes_limit_with_scans", "expected_cost"]
    if gain <= 0:
        return None
    return float((without - strategies.loc["policy", "expected_cost"]) / gain)


def _savings_captured(strategies: pd.DataFrame, limit: str) -> dict[str, float | None]:
    """Share of the ``limit`` strategy's savings over never acting each strategy achieves."""
    if "expected_cost" not in strategies or limit not in strategies.index:
        return {}
    never = strategies.loc["never_act", "expected_cost"]
    best = strategies.loc[limit, "expected_cost"]
    gap = never - best
    return {
        name: (float((never - cost) / gap) if gap > 0 else None)
        for name, cost in strategies["expected_cost"].items()
    }


def plot_evaluation(result: BacktestResult, out_dir: Path) -> list[Path]:
    """Per-destination lag and calibration plots (PNG); returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    lanes = result.lanes.dropna(subset=["median_transit_days"]).head(25)
    fig, ax = plt.subplots(figsize=(10, 6))
    y = np.arange(len(lanes))
    colors = ["tab:red" if lag else "tab:blue" for lag in lanes["structural_lag"]]
    ax.barh(y, lanes["p90_transit_days"], color=colors, alpha=0.35, label="90th percentile")
    ax.barh(y, lanes["median_transit_days"], color=colors, label="median")
    ax.set_yticks(y, lanes.index)
    ax.invert_yaxis()
    ax.set_xlabel("transit days (delivered parcels; red = structural lag)")
    ax.set_title("Transit time by destination")
    ax.legend(loc="lower right")
    fig.tight_layout()
    paths.append(out_dir / "lag_by_destination.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 6))
    for label, rows in (("model", result.summary["calibration_table"]),):
        ax.plot(
            [r["mean_predicted"] for r in rows],
            [r["observed_rate"] for r in rows],
            "o-",
            label=label,
        )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.set_xlabel("predicted p_late")
    ax.set_ylabel("observed late share")
    ax.set_title(f"Calibration on {result.summary['decisions']} backtest decisions")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "calibration.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths
