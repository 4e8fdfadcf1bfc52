"""Generator cost: history + scans, open orders + scans, and the truth functions.

Each measure runs in its own subprocess so its peak RSS (ru_maxrss) is its own.

    python bench/bench_generate.py                      # the issue-9 targets
    python bench/bench_generate.py --open-rows 200000   # a smaller open-orders run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def history(rows: int) -> dict:
    from data.generate import generate_history, generate_shipments

    started = time.perf_counter()
    generated = generate_shipments(rows, seed=7)
    with_scans = time.perf_counter() - started
    started = time.perf_counter()
    generate_history(rows, seed=7)
    frame_only = time.perf_counter() - started
    return {
        "measure": "generate_shipments",
        "rows": rows,
        "scans": len(generated.events),
        "seconds": round(with_scans, 2),
        "frame_only_seconds": round(frame_only, 2),
        "peak_rss_mb": _peak_mb(),
    }


def open_orders(rows: int) -> dict:
    from data.generate import generate_open

    started = time.perf_counter()
    generated = generate_open(rows, seed=5)
    return {
        "measure": "generate_open",
        "rows": rows,
        "scans": len(generated.events),
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_mb": _peak_mb(),
    }


def truth(decisions: int) -> dict:
    """Decisions as a backtest makes them: undelivered parcels 0-4 days before their deadline,
    horizons the deadline and the deadline + 30 days."""
    import numpy as np
    import pandas as pd

    from data.generate import generate_shipments, true_survival, true_survival_given_scans

    generated = generate_shipments(15 * decisions, seed=7)  # ~8 % are still out by then
    frame = generated.frame
    rng = np.random.default_rng(0)
    lead = rng.integers(0, 5, size=len(frame))
    decision = frame["deadline"] - pd.to_timedelta(lead, unit="D")
    travelled = (frame["delivered_at"].isna() | (frame["delivered_at"] > decision)) & (
        decision <= pd.Timestamp("2026-11-01")
    )
    rows = frame[travelled.to_numpy()].sample(decisions, random_state=1).reset_index(drop=True)
    when = (rows["deadline"] - pd.to_timedelta(lead[: len(rows)], unit="D")).to_numpy()
    window = (rows["deadline"] - rows["shipped_at"]).dt.days.to_numpy()
    days = np.column_stack([window, window + 30])
    started = time.perf_counter()
    p = true_survival_given_scans(rows, generated.events, when, days)
    given_scans = time.perf_counter() - started
    started = time.perf_counter()
    true_survival(rows, days)
    plain = time.perf_counter() - started
    return {
        "measure": "true_survival_given_scans",
        "decisions": len(rows),
        "horizons": 2,
        "seconds": round(given_scans, 2),
        "true_survival_seconds": round(plain, 2),
        "mean_p": [round(float(x), 4) for x in p.mean(axis=0)],
        "peak_rss_mb": _peak_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history-rows", type=int, default=120_000)
    parser.add_argument("--open-rows", type=int, default=1_000_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, size = args.child
        measure = {"history": history, "open": open_orders, "truth": truth}[name]
        print(json.dumps(measure(int(size))), flush=True)
        return
    for name, size in (
        ("history", args.history_rows),
        ("truth", args.decisions),
        ("open", args.open_rows),
    ):
        subprocess.run([sys.executable, __file__, "--child", name, str(size)], check=True)


if __name__ == "__main__":
    main()
