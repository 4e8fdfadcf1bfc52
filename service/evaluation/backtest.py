"""Time-based backtest: the policy's decision cost beside simple rules and baselines.

Everything the models know stops at the split date ``as_of - holdout_days``; they are scored
on the orders that reached their decision point (``act_within_days - 1`` days before the
deadline, still undelivered) after it, with outcomes known by ``as_of``. Strategies:

- ``policy``: the advisor (hazard model + calibration + expected-cost policy);
- ``never_act``; ``extend_all_in_window`` (the usual ERP rule); ``extend_brazil_only``;
- ``policy_kaplan_meier``: the same policy fed by a per-lane Kaplan-Meier estimate;
- ``bayes_limit`` (history made by ``generate`` only): the policy fed the generator's true
  probabilities, the best any estimate can do.

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
from model.km import LaneKaplanMeier
from model.predictor import AdvisorModel
from model.train import TrainingConfig, lane_table, train_model
from service.policy import PolicyConfig, decide

__all__ = ["STRATEGIES", "BacktestResult", "TruthFn", "plot_evaluation", "run_backtest"]

STRATEGIES = (
    "policy",
    "never_act",
    "extend_all_in_window",
    "extend_brazil_only",
    "policy_kaplan_meier",
    "bayes_limit",
)
_CHOICE_INDEX = {"none": 0, "extend": 1, "escalate": 2}

TruthFn = Callable[[pd.DataFrame, np.ndarray], np.ndarray]
"""``truth(frame, days)``: true P(T > days) per row (and column) of a generated history."""


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
) -> BacktestResult:
    """Fit at the split, decide every later decision point, and cost each strategy."""
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
    model = train_model(history, start, config)
    features = model.hazard.encoder_.transform(samples)
    elapsed = samples["elapsed"].to_numpy()
    p_model = model.conditional_late(
        features, elapsed, samples["deadline_days"].to_numpy(), policy.extension_days
    )
    km = LaneKaplanMeier(horizon_days=model.hazard.horizon_days).fit(history, start)
    deadline = samples["deadline_days"].to_numpy()
    p_km = km.predict_conditional(
        samples, elapsed, np.column_stack([deadline, deadline + policy.extension_days])
    )
    n = len(samples)
    actions: dict[str, np.ndarray] = {
        "policy": _policy_actions(p_model, samples, policy),
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

    costs = policy.cost_matrix()
    outcome_index = pd.Categorical(samples["outcome"], categories=OUTCOMES).codes
    table = samples[
        ["order_id", "destination_country", "shipping_method", "decision_at", "outcome"]
    ].copy()
    table["p_late"], table["p_late_after_extension"] = p_model[:, 0], p_model[:, 1]
    table["p_late_km"], table["p_late_after_extension_km"] = p_km[:, 0], p_km[:, 1]
    if p_true is not None:
        table["p_late_true"], table["p_late_after_extension_true"] = p_true[:, 0], p_true[:, 1]
        true_outcomes = np.column_stack(
            [1 - p_true[:, 0], p_true[:, 0] - p_true[:, 1], p_true[:, 1]]
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
        if p_true is not None:
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
        "savings_captured": _savings_captured(strategies),
    }
    if p_true is not None:
        summary["p_late_true"] = probability_metrics(p_true[:, 0], samples["late"].to_numpy())
    lanes = lane_table(history, as_of, horizon_days=model.hazard.horizon_days)
    summary["lanes"] = lanes.reset_index().to_dict(orient="records")
    return BacktestResult(summary=summary, samples=table, lanes=lanes, model=model)


def _savings_captured(strategies: pd.DataFrame) -> dict[str, float | None]:
    """Share of the Bayes limit's savings over never acting that each strategy achieves."""
    if "expected_cost" not in strategies or "bayes_limit" not in strategies.index:
        return {}
    never = strategies.loc["never_act", "expected_cost"]
    best = strategies.loc["bayes_limit", "expected_cost"]
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
