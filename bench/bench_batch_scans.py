"""Batch scoring with carrier scans (issue 9): `score --events` against `score` of the same
orders without them, in alternating pairs (the ratio is taken inside each pair, as the
machine is shared), with wall time, CPU time and peak RSS of each run.

    python bench/bench_batch_scans.py [--rows 1000000] [--repeat 3] [--model DIR]

Inputs: `generate_open(N, seed=5)` open orders as CSV and their scans as CSV (ISO datetimes,
with carrier, location and description), cached in bench/out/. The model must carry a scan
model: by default the README's main job's (`window-advisor train` on the bundled history
and its scans, in artifacts/model). Targets: with scans at most 2x the time without, peak
RSS under 1 GB. Prints one JSON line per run and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_batch import measure  # noqa: E402

from data.generate import DEFAULT_AS_OF, generate_open, write_generated  # noqa: E402

OUT = ROOT / "bench" / "out"


def inputs(rows: int) -> tuple[Path, Path]:
    orders = OUT / f"scans_open_{rows}.csv"
    events = OUT / f"scans_open_{rows}.events.csv"
    if not (orders.is_file() and events.is_file()):
        made = generate_open(rows, seed=5, as_of=DEFAULT_AS_OF)
        write_generated(made.frame, orders, seed=5, as_of=DEFAULT_AS_OF, kind="open")
        write_generated(made.events, events, seed=5, as_of=DEFAULT_AS_OF, kind="events")
    return orders, events


def command(orders: Path, output: Path, model: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "service.cli", "score", str(orders), "--out", str(output),
        "--model", str(model), "--as-of", DEFAULT_AS_OF.isoformat(), *extra,
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", type=Path, default=ROOT / "artifacts" / "model")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((args.model / "manifest.json").read_text())
    if not manifest.get("training", {}).get("scans"):
        raise SystemExit(f"{args.model}: the model has no scan model; train it with scans")
    orders, events = inputs(args.rows)
    n_scans = sum(1 for _ in events.open("rb")) - 1
    print(
        json.dumps(
            {
                "rows": args.rows,
                "scans": n_scans,
                "orders_mb": round(orders.stat().st_size / 2**20),
                "events_mb": round(events.stat().st_size / 2**20),
                "load_average": os.getloadavg(),
            }
        ),
        flush=True,
    )
    pairs = []
    for k in range(args.repeat):
        runs = {}
        for name in ("without", "with") if k % 2 == 0 else ("with", "without"):  # alternate
            extra = ("--events", str(events)) if name == "with" else ()
            output = OUT / f"scans_{name}.csv"
            runs[name] = measure(command(orders, output, args.model, *extra), f"{name} scans")
        pairs.append((runs["without"], runs["with"]))
    ratios = [t["seconds"] / p["seconds"] for p, t in pairs]
    summary = {
        "ratio_with_to_without": [round(r, 2) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 2),
        "with_scans_seconds": [t["seconds"] for _, t in pairs],
        "without_seconds": [p["seconds"] for p, _ in pairs],
        "with_scans_peak_rss_mb": [t["peak_rss_mb"] for _, t in pairs],
        "without_peak_rss_mb": [p["peak_rss_mb"] for p, _ in pairs],
        "with_scans_cpu_seconds": [t["cpu_seconds"] for _, t in pairs],
        "without_cpu_seconds": [p["cpu_seconds"] for p, _ in pairs],
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
