"""Decision quality with carrier scans on generated data: the share of the tracking gain.

For each history size, train the advisor on a generated history *with its scans*, then
decide a fresh, independent snapshot of generated open orders (with the scans they have by
``as_of``) inside their last ``act_within_days`` (never training rows). Each strategy's cost
is its expected cost under the generator's true probabilities given the scans, so outcome
noise does not blur the comparison.

- tracking gain captured = (cost of the best decisions without scans - cost of the policy)
  / (cost of the best decisions without scans - cost of the best decisions with scans);
- savings captured = (cost(never act) - cost(policy)) / (cost(never) - cost(Bayes with scans)).

    python bench/bench_tracking.py --rows 20000 200000 --orders 40000 --seeds 7 8

Writes one JSON line per (rows, seed) to stdout and a table to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from data.generate import (
    DEFAULT_AS_OF,
    generate_open,
    generate_shipments,
    true_survival,
    true_survival_given_scans,
)
from model.events import ScanTable, match_events, validate_events
from model.features import days_between
from model.schema import validate_history, validate_open_orders
from model.train import TrainingConfig, train_model
from service.policy import PolicyConfig, decide

CHOICE = {"none": 0, "extend": 1, "escalate": 2}


def scans_of(events: pd.DataFrame, orders: pd.DataFrame) -> ScanTable:
    validated = validate_events(events)
    return match_events(
        ScanTable.from_frame(validated.valid),
        orders["order_id"].to_numpy(dtype=object),
        orders["shipped_at"].to_numpy(),
    ).table


def actions(p: np.ndarray, orders: pd.DataFrame, remaining: np.ndarray, policy: PolicyConfig):
    n = len(orders)
    return decide(
        p_late=p[:, 0],
        p_after=p[:, 1],
        days_remaining=remaining,
        delivered=np.zeros(n, dtype=bool),
        in_dispute=np.zeros(n, dtype=bool),
        extensions=orders["extensions"].to_numpy(),
        config=policy,
    ).action


def run(rows: int, seed: int, n_orders: int, policy: PolicyConfig, config: TrainingConfig):
    started = time.perf_counter()
    made = generate_shipments(rows, seed=seed, as_of=DEFAULT_AS_OF)
    history = validate_history(made.frame).valid
    history_scans = scans_of(made.events, history)
    model = train_model(history, DEFAULT_AS_OF, config, scans=history_scans)
    fit_seconds = time.perf_counter() - started

    opened = generate_open(n_orders, seed=seed + 1000, as_of=DEFAULT_AS_OF, dispute_share=0.0)
    orders = validate_open_orders(opened.frame, as_of=DEFAULT_AS_OF).valid
    scans = scans_of(opened.events, orders)
    with_scans = model.predict_columns(orders, DEFAULT_AS_OF, scans=scans)
    lane_only = model.predict_columns(orders, DEFAULT_AS_OF)
    remaining = with_scans["days_remaining"]
    keep = (
        ~with_scans["delivered"]
        & (remaining >= 0)
        & (remaining < policy.act_within_days)
        & (orders["extensions"].to_numpy() < policy.max_extensions)
    )
    orders = orders.loc[keep].reset_index(drop=True)
    remaining = remaining[keep]
    p_scans = np.column_stack(
        [with_scans["p_late"][keep], with_scans["p_late_after_extension"][keep]]
    )
    p_lane = np.column_stack([lane_only["p_late"][keep], lane_only["p_late_after_extension"][keep]])
    has_scans = with_scans["last_milestone"][keep] >= 0

    as_of = np.datetime64(DEFAULT_AS_OF, "D")
    elapsed = days_between(
        np.full(len(orders), np.datetime64(DEFAULT_AS_OF, "ns")), orders["shipped_at"]
    )
    deadline = days_between(orders["deadline"], orders["shipped_at"])
    horizons = np.column_stack([deadline, deadline + policy.extension_days])
    survival = true_survival(orders, np.column_stack([elapsed, horizons]))
    p_true = np.clip(survival[:, 1:] / np.maximum(survival[:, [0]], 1e-300), 0, 1)
    p_true_scans = np.clip(
        true_survival_given_scans(orders, opened.events, np.full(len(orders), as_of), horizons),
        0,
        1,
    )

    truth = np.column_stack(
        [1 - p_true_scans[:, 0], p_true_scans[:, 0] - p_true_scans[:, 1], p_true_scans[:, 1]]
    )
    costs = policy.cost_matrix()

    def expected(chosen: np.ndarray) -> float:
        index = np.array([CHOICE[a] for a in chosen])
        return float((costs[index] * truth).sum())

    strategies = {
        "never_act": np.full(len(orders), "none", dtype=object),
        "extend_all": np.full(len(orders), "extend", dtype=object),
        "policy": actions(p_scans, orders, remaining, policy),
        "policy_without_scans": actions(p_lane, orders, remaining, policy),
        "bayes_without_scans": actions(p_true, orders, remaining, policy),
        "bayes_with_scans": actions(p_true_scans, orders, remaining, policy),
    }
    cost = {name: expected(chosen) for name, chosen in strategies.items()}
    gain = cost["bayes_without_scans"] - cost["bayes_with_scans"]
    savings = cost["never_act"] - cost["bayes_with_scans"]
    # "Lost vs still coming": the true P(beyond the extension) is the target's expectation;
    # rank quality against outcomes drawn from it (fixed seed), and Brier against it.
    draw = np.random.default_rng(seed).random(len(orders)) < p_true_scans[:, 1]
    record: dict[str, Any] = {
        "rows": rows,
        "seed": seed,
        "decisions": len(orders),
        "decisions_with_scans": int(has_scans.sum()),
        "fit_seconds": round(fit_seconds, 1),
        "expected_cost": {k: round(v, 2) for k, v in cost.items()},
        "tracking_gain_captured": (cost["bayes_without_scans"] - cost["policy"]) / gain,
        "savings_captured_vs_bayes_with_scans": {
            k: (cost["never_act"] - v) / savings for k, v in cost.items()
        },
        "after_extension_auc": {
            "policy": roc_auc_score(draw, p_scans[:, 1]),
            "lane_only": roc_auc_score(draw, p_lane[:, 1]),
            "true_without_scans": roc_auc_score(draw, p_true[:, 1]),
            "true_with_scans": roc_auc_score(draw, p_true_scans[:, 1]),
        },
        "after_extension_brier_vs_truth": {
            "policy": float(np.mean((p_scans[:, 1] - p_true_scans[:, 1]) ** 2)),
            "lane_only": float(np.mean((p_lane[:, 1] - p_true_scans[:, 1]) ** 2)),
        },
        "no_scan_orders_savings_captured": _no_scan_share(has_scans, strategies, truth, costs),
        "scan_model": model.training.get("scans"),
    }
    return record


def _no_scan_share(
    has_scans: np.ndarray, strategies: dict[str, np.ndarray], truth: np.ndarray, costs: np.ndarray
) -> float | None:
    """On the orders without scans: the policy's share of the (days-travelled) Bayes savings."""
    rows = ~has_scans
    if not rows.any():
        return None

    def cost(name: str) -> float:
        index = np.array([CHOICE[a] for a in strategies[name][rows]])
        return float((costs[index] * truth[rows]).sum())

    gap = cost("never_act") - cost("bayes_without_scans")
    return (cost("never_act") - cost("policy")) / gap if gap > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--orders", type=int, default=40_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    args = parser.parse_args()
    policy = PolicyConfig()
    for rows in args.rows:
        for seed in args.seeds:
            record = run(rows, seed, args.orders, policy, TrainingConfig())
            print(json.dumps(record, default=float), flush=True)
            shares = record["savings_captured_vs_bayes_with_scans"]
            print(
                f"rows {rows:>7,} seed {seed}: tracking gain captured"
                f" {record['tracking_gain_captured']:.1%}; savings vs Bayes with scans"
                f" {shares['policy']:.1%} (without scans {shares['policy_without_scans']:.1%});"
                f" decisions {record['decisions']:,}"
                f" ({record['decisions_with_scans']:,} with scans);"
                f" fit {record['fit_seconds']:.0f} s",
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
