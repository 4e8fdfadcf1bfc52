"""Decision quality on generated data: share of the Bayes limit's savings over "never act".

For each history size, train the advisor (and the per-lane Kaplan-Meier baseline) on a
generated history, then decide a fresh, independent snapshot of generated open orders
inside their last ``act_within_days`` (never training rows). Each strategy's cost is its
expected cost under the generator's *true* probabilities, so outcome noise does not blur
the comparison; the Bayes limit is the policy fed those true probabilities.

    python bench/bench_decisions.py --rows 20000 200000 --orders 40000 --seeds 7 8

Writes one JSON line per (rows, seed) to stdout and a table to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from data.generate import DEFAULT_AS_OF, generate_history, generate_open_orders, true_survival
from model.features import days_between
from model.km import LaneKaplanMeier
from model.schema import validate_history, validate_open_orders
from model.train import train_model
from service.policy import PolicyConfig, decide, expected_costs

CHOICE = {"none": 0, "extend": 1, "escalate": 2}


def decision_orders(n: int, seed: int, policy: PolicyConfig) -> pd.DataFrame:
    """Undelivered, undisputed open orders inside the action window, extendable."""
    orders = validate_open_orders(
        generate_open_orders(n, seed=seed, as_of=DEFAULT_AS_OF, dispute_share=0.0),
        as_of=DEFAULT_AS_OF,
    ).valid
    remaining = days_between(orders["deadline"], np.full(len(orders), np.datetime64(DEFAULT_AS_OF)))
    keep = (
        orders["delivered_at"].isna().to_numpy()
        & (remaining >= 0)
        & (remaining < policy.act_within_days)
        & (orders["extensions"].to_numpy() < policy.max_extensions)
    )
    return orders.loc[keep].reset_index(drop=True)


def naive_classifier(
    history: pd.DataFrame, policy: PolicyConfig
) -> Callable[[pd.DataFrame], np.ndarray]:
    """The approach we do not ship: "was this order late", ignoring time already travelled.

    Two gradient-boosted classifiers on lane and season features, trained on orders whose
    outcome was known by the cut-off. Returned as a function of open orders.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    from model.features import FeatureEncoder

    cutoff = pd.Timestamp(DEFAULT_AS_OF)
    known = history.loc[
        history["deadline"] + pd.Timedelta(days=policy.extension_days) <= cutoff
    ].reset_index(drop=True)
    arrived = known["delivered_at"].where(known["delivered_at"] <= cutoff)
    late = (arrived.isna() | (arrived > known["deadline"])).to_numpy()
    after = (
        arrived.isna() | (arrived > known["deadline"] + pd.Timedelta(days=policy.extension_days))
    ).to_numpy()
    encoder = FeatureEncoder().fit(known)
    X = encoder.transform(known).codes
    fitted = [
        HistGradientBoostingClassifier(
            categorical_features=encoder.categorical, random_state=0
        ).fit(X, target)
        for target in (late, after)
    ]

    def predict(orders: pd.DataFrame) -> np.ndarray:
        codes = encoder.transform(orders, extension_days=policy.extension_days).codes
        p = np.column_stack([m.predict_proba(codes)[:, 1] for m in fitted])
        p[:, 1] = np.minimum(p[:, 1], p[:, 0])
        return p

    return predict


def actions_for(p: np.ndarray, orders: pd.DataFrame, policy: PolicyConfig) -> np.ndarray:
    n = len(orders)
    remaining = days_between(orders["deadline"], np.full(n, np.datetime64(DEFAULT_AS_OF)))
    chosen = decide(
        p_late=p[:, 0],
        p_after=p[:, 1],
        days_remaining=remaining,
        delivered=np.zeros(n, bool),
        in_dispute=np.zeros(n, bool),
        extensions=orders["extensions"].to_numpy(),
        config=policy,
    ).action
    return np.array([CHOICE[a] for a in chosen])


def run(rows: int, seed: int, n_orders: int, policy: PolicyConfig) -> dict[str, Any]:
    history = validate_history(generate_history(rows, seed=seed, as_of=DEFAULT_AS_OF)).valid
    started = time.perf_counter()
    model = train_model(history, DEFAULT_AS_OF)
    train_seconds = time.perf_counter() - started
    km = LaneKaplanMeier().fit(history, DEFAULT_AS_OF)
    orders = decision_orders(n_orders, seed + 1000, policy)
    n = len(orders)
    elapsed = days_between(np.full(n, np.datetime64(DEFAULT_AS_OF)), orders["shipped_at"])
    deadline = days_between(orders["deadline"], orders["shipped_at"])
    horizons = np.column_stack([deadline, deadline + policy.extension_days])
    p_model = model.predict(orders, DEFAULT_AS_OF)[["p_late", "p_late_after_extension"]].to_numpy()
    p_km = km.predict_conditional(orders, elapsed, horizons)
    p_naive = naive_classifier(history, policy)(orders)
    survival = true_survival(orders, np.column_stack([elapsed, horizons]))
    p_true = np.clip(survival[:, 1:] / np.maximum(survival[:, [0]], 1e-300), 0, 1)
    true_cost = expected_costs(p_true[:, 0], p_true[:, 1], policy)  # (n, 3)
    strategies = {
        "policy": actions_for(p_model, orders, policy),
        "policy_kaplan_meier": actions_for(p_km, orders, policy),
        "naive_late_classifier": actions_for(p_naive, orders, policy),
        "never_act": np.zeros(n, dtype=int),
        "extend_all_in_window": np.ones(n, dtype=int),
        "extend_brazil_only": (orders["destination_country"] == "BR").to_numpy().astype(int),
        "bayes_limit": actions_for(p_true, orders, policy),
    }
    cost = {k: float(true_cost[np.arange(n), a].sum()) for k, a in strategies.items()}
    gap = cost["never_act"] - cost["bayes_limit"]
    captured = {k: (cost["never_act"] - c) / gap for k, c in cost.items()}
    return {
        "history_rows": rows,
        "seed": seed,
        "decisions": n,
        "train_seconds": round(train_seconds, 1),
        "expected_cost": {k: round(v, 2) for k, v in cost.items()},
        "savings_captured": {k: round(v, 4) for k, v in captured.items()},
        "brier_p_late_vs_true": {
            "model": float(np.mean((p_model[:, 0] - p_true[:, 0]) ** 2)),
            "kaplan_meier": float(np.mean((p_km[:, 0] - p_true[:, 0]) ** 2)),
        },
        "brier_p_after_vs_true": {
            "model": float(np.mean((p_model[:, 1] - p_true[:, 1]) ** 2)),
            "kaplan_meier": float(np.mean((p_km[:, 1] - p_true[:, 1]) ** 2)),
        },
        "as_of": str(DEFAULT_AS_OF),
        "orders_shipped_from": str(DEFAULT_AS_OF - timedelta(days=int(elapsed.max()))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--orders", type=int, default=40_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7])
    args = parser.parse_args()
    policy = PolicyConfig()
    for rows in args.rows:
        for seed in args.seeds:
            result = run(rows, seed, args.orders, policy)
            print(json.dumps(result), flush=True)
            captured = result["savings_captured"]
            print(
                f"rows={rows:>8,} seed={seed} decisions={result['decisions']:,} "
                + " ".join(f"{k}={v:.1%}" for k, v in captured.items()),
                file=sys.stderr,
            )


if __name__ == "__main__":
    main()
