"""Training cost: wall time and peak memory of `train_model` on generated histories.

Each size runs in its own subprocess so its peak RSS (ru_maxrss) is its own.

    python bench/bench_train.py --rows 200000 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(rows: int) -> None:
    from data.generate import DEFAULT_AS_OF, generate_history
    from model.schema import validate_history
    from model.train import train_model

    history = validate_history(generate_history(rows, seed=7, as_of=DEFAULT_AS_OF)).valid
    started = time.perf_counter()
    model = train_model(history, DEFAULT_AS_OF)
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
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    for rows in args.rows:
        subprocess.run([sys.executable, __file__, "--child", str(rows)], check=True)


if __name__ == "__main__":
    main()
