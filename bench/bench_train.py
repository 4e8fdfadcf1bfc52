"""Training cost: wall time and peak memory of `train_model` on generated histories.

Each size runs in its own subprocess so its peak RSS (ru_maxrss) is its own. With
``--scans`` the history's carrier scans are read, validated and matched as ``train
--events`` does (counted in the time), and the scan model is trained too.

    python bench/bench_train.py --rows 200000 1000000
    python bench/bench_train.py --rows 200000 --scans
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(rows: int, scans: bool) -> None:
    from data.generate import DEFAULT_AS_OF, generate_shipments
    from model.events import ScanTable, match_events, validate_events
    from model.schema import validate_history
    from model.train import train_model

    made = generate_shipments(rows, seed=7, as_of=DEFAULT_AS_OF)
    history = validate_history(made.frame).valid
    started = time.perf_counter()
    table = None
    if scans:
        valid = validate_events(made.events).valid
        table = match_events(
            ScanTable.from_frame(valid),
            history["order_id"].to_numpy(dtype=object),
            history["shipped_at"].to_numpy(),
        ).table
    model = train_model(history, DEFAULT_AS_OF, scans=table)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": rows,
                "train_seconds": round(seconds, 1),
                "peak_rss_mb": round(peak_mb),
                "person_days": model.training["person_days"],
                "holdout_auc": model.training["holdout"].get("p_late", {}).get("auc"),
                "scans": len(made.events) if scans else 0,
                "landmark_rows": (model.training.get("scans") or {}).get("landmark_rows"),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--scans", action="store_true", help="train with the generated scans")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.scans)
        return
    for rows in args.rows:
        extra = ["--scans"] if args.scans else []
        subprocess.run([sys.executable, __file__, "--child", str(rows), *extra], check=True)


if __name__ == "__main__":
    main()
