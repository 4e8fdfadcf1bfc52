"""Real deliveries: the advisor's p_late on the public Olist orders sample, beside a
single-lane Kaplan-Meier estimate, on a time split.

    python bench/bench_olist.py [ORDERS.csv] [--split 2018-03-01] [--days-before 4]

ORDERS.csv defaults to ../shared/realdata/olist_orders_sample.csv beside the repository (a
real, non-commercial sample: it is read in place, nothing derived from it is written).
Everything the models know stops the day before ``--split``; they are scored on orders
handed to the carrier from ``--split`` on, seen ``--days-before`` days before the promised
date while still undelivered. Hyper-parameters are chosen on an inner split inside the
training period (never on the test orders); every candidate's test figures are printed too,
for transparency. Intervals are 95% percentile bootstraps over test orders.
"""

from __future__ import annotations

import argparse
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score
from threadpoolctl import threadpool_limits

from data.importers import import_olist, read_csv_text
from model.backtest import decision_samples
from model.km import LaneKaplanMeier
from model.train import TrainingConfig, train_model
from service.history import latest_date

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ORDERS = REPO.parent / "shared" / "realdata" / "olist_orders_sample.csv"
CANDIDATES: tuple[dict[str, Any], ...] = tuple(
    {"min_samples_leaf": leaf, "max_iter": iters}
    for leaf in (200, 50, 20)
    for iters in (50, 100, 200)
)


def test_decisions(
    history: pd.DataFrame, *, after: date, as_of: date, days_before: int
) -> pd.DataFrame:
    """Orders shipped after ``after``, undelivered ``days_before`` days before the deadline,
    outcome known by ``as_of``."""
    samples = decision_samples(
        history, start=after, as_of=as_of, days_before=days_before, extension_days=30
    )
    return samples.loc[samples["shipped_at"] > pd.Timestamp(after)].reset_index(drop=True)


def model_p_late(
    history: pd.DataFrame, as_of: date, samples: pd.DataFrame, hazard: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, Any]:
    """Calibrated and raw p_late of ``samples`` from a model trained as of ``as_of``."""
    model = train_model(history, as_of, TrainingConfig(hazard=hazard))
    features = model.hazard.encoder_.transform(samples)
    elapsed = samples["elapsed"].to_numpy()
    deadline = samples["deadline_days"].to_numpy()
    raw = model.hazard.conditional_survival(features, elapsed, deadline)
    calibrated = model.conditional_late(features, elapsed, deadline)[:, 0]
    return calibrated, raw, model


def km_p_late(history: pd.DataFrame, as_of: date, samples: pd.DataFrame) -> np.ndarray:
    km = LaneKaplanMeier(lanes=("destination_country",)).fit(history, as_of)
    return km.predict_conditional(
        samples, samples["elapsed"].to_numpy(), samples["deadline_days"].to_numpy()
    )


def bootstrap(
    late: np.ndarray, estimates: dict[str, np.ndarray], *, rounds: int, seed: int = 0
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """AUC and Brier (point, 2.5%, 97.5%) per estimate, and paired differences to ``km``."""
    rng = np.random.default_rng(seed)
    n = len(late)
    draws: dict[str, dict[str, list[float]]] = {
        name: {"auc": [], "brier": []} for name in [*estimates, *(f"{k} - km" for k in estimates)]
    }
    for _ in range(rounds):
        index = rng.integers(0, n, n)
        y = late[index]
        if y.all() or not y.any():
            continue
        scores = {
            name: (roc_auc_score(y, p[index]), brier_score_loss(y, p[index]))
            for name, p in estimates.items()
        }
        for name, (auc, brier) in scores.items():
            draws[name]["auc"].append(auc)
            draws[name]["brier"].append(brier)
            draws[f"{name} - km"]["auc"].append(auc - scores["km"][0])
            draws[f"{name} - km"]["brier"].append(brier - scores["km"][1])
    point = {
        name: (roc_auc_score(late, p), brier_score_loss(late, p)) for name, p in estimates.items()
    }
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, metrics in draws.items():
        base, _, ref = name.partition(" - ")
        out[name] = {}
        for i, metric in enumerate(("auc", "brier")):
            centre = point[base][i] - (point[ref][i] if ref else 0.0)
            low, high = np.percentile(metrics[metric], [2.5, 97.5])
            out[name][metric] = (centre, float(low), float(high))
    return out


def fmt(value: tuple[float, float, float]) -> str:
    return f"{value[0]:.3f} [{value[1]:.3f}, {value[2]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orders", nargs="?", type=Path, default=DEFAULT_ORDERS)
    parser.add_argument("--customers", type=Path, default=None)
    parser.add_argument("--split", type=date.fromisoformat, default=date(2018, 3, 1))
    parser.add_argument("--inner-days", type=int, default=150, help="inner validation span")
    parser.add_argument("--days-before", type=int, default=4)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    threadpool_limits(limits=args.threads)
    started = time.perf_counter()

    imported = import_olist(
        read_csv_text(args.orders), read_csv_text(args.customers) if args.customers else None
    )
    history = imported.history
    data_as_of = latest_date(history)
    train_as_of = args.split - timedelta(days=1)
    print(
        f"imported {len(history):,} of {imported.rows_read:,} orders"
        f" (skipped {imported.rows_skipped:,}: {imported.skipped};"
        f" rejected {len(imported.rejects):,}); data as of {data_as_of}; {imported.notes}"
    )
    print(
        f"training orders (shipped <= {train_as_of}):"
        f" {(history['shipped_at'] <= pd.Timestamp(train_as_of)).sum():,}"
    )

    # 1. Hyper-parameters chosen on an inner split inside the training period.
    inner_as_of = train_as_of - timedelta(days=args.inner_days)
    inner = test_decisions(
        history, after=inner_as_of, as_of=train_as_of, days_before=args.days_before
    )
    print(
        f"inner validation: trained as of {inner_as_of}, {len(inner)} decisions"
        f" ({inner['late'].mean():.1%} late)"
    )
    inner_auc = {}
    for hazard in CANDIDATES:
        _, raw, _ = model_p_late(history, inner_as_of, inner, hazard)
        inner_auc[str(hazard)] = roc_auc_score(inner["late"], raw)
    chosen = max(CANDIDATES, key=lambda h: inner_auc[str(h)])

    # 2. The test split.
    test = test_decisions(
        history, after=train_as_of, as_of=data_as_of, days_before=args.days_before
    )
    late = test["late"].to_numpy()
    print(
        f"test: {len(test)} decisions (orders shipped >= {args.split}, undelivered"
        f" {args.days_before} days before the promise), {late.mean():.1%} late;"
        f" decisions {test['decision_at'].min():%Y-%m-%d} .. {test['decision_at'].max():%Y-%m-%d}"
    )
    calibrated, raw, model = model_p_late(history, train_as_of, test, chosen)
    no_handoff, _, _ = model_p_late(history.assign(ordered_at=pd.NaT), train_as_of, test, chosen)
    default, _, _ = model_p_late(history, train_as_of, test, {})
    estimates = {
        "km": km_p_late(history, train_as_of, test),
        "model": calibrated,
        "model_raw": raw,
        "model_no_handoff": no_handoff,
        "model_default_params": default,
    }
    results = bootstrap(late, estimates, rounds=args.bootstrap)

    print(
        f"\nchosen hazard parameters (inner AUC): {chosen} ({inner_auc[str(chosen)]:.3f});"
        f" calibration {model.calibrator}"
    )
    print("\n| estimate | AUC [95% CI] | Brier [95% CI] | mean p_late |")
    print("|---|---|---|---|")
    for name, p in estimates.items():
        print(
            f"| {name} | {fmt(results[name]['auc'])} | {fmt(results[name]['brier'])} |"
            f" {p.mean():.3f} |"
        )
    print("\n| paired difference vs km | AUC [95% CI] | Brier [95% CI] |")
    print("|---|---|---|")
    for name in estimates:
        if name != "km":
            key = f"{name} - km"
            print(f"| {key} | {fmt(results[key]['auc'])} | {fmt(results[key]['brier'])} |")
    print("\n| hazard parameters | inner AUC (chooses) | test AUC raw | test Brier raw |")
    print("|---|---|---|---|")
    for hazard in CANDIDATES:
        _, candidate_raw, _ = model_p_late(history, train_as_of, test, hazard)
        print(
            f"| {hazard} | {inner_auc[str(hazard)]:.3f} | {roc_auc_score(late, candidate_raw):.3f}"
            f" | {brier_score_loss(late, candidate_raw):.3f} |"
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
