"""Batch scoring at scale: wall time against plain pandas, peak memory, Parquet vs CSV, Dask.

Every measured run is a fresh subprocess of ``window-advisor score`` (or of a plain pandas
read_csv + to_csv of the same file), reaped with ``os.wait4`` so its own peak RSS is known.
The pandas baseline runs right before and after the scoring run and the ratio uses their
mean, so it holds on a noisy, shared machine.

    python bench/bench_batch.py                      # 1M rows, all measurements
    python bench/bench_batch.py --big-rows 5000000   # adds the 5M-row memory run
    python bench/bench_batch.py --only stages        # where the time goes, per stage

Inputs (generated open orders, a small trained model) are cached under bench/out/.
Prints one JSON object per measurement and a Markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
AS_OF = date(2026, 11, 1)


# -- inputs ------------------------------------------------------------------------------
def model_dir() -> Path:
    """A model trained once on 100k generated shipments (as in the test suite, fast)."""
    from model.artifact import load_model
    from model.errors import AdvisorError

    directory = OUT / "batch_model"
    try:
        load_model(directory)
        return directory
    except AdvisorError:  # none yet, or written by an older version of the code
        shutil.rmtree(directory, ignore_errors=True)
    from data.generate import generate_history
    from model.artifact import save_model
    from model.schema import validate_history
    from model.train import TrainingConfig, train_model

    history = validate_history(generate_history(100_000, seed=11, as_of=AS_OF)).valid
    config = TrainingConfig(hazard={"max_iter": 100, "max_person_days": 600_000})
    save_model(
        train_model(history, AS_OF, config),
        directory,
        data_sha256="0" * 64,
        data_source="bench:generate_history(100000, seed=11)",
    )
    return directory


def orders_file(rows: int, kind: str) -> Path:
    """Generated open orders (seed 5) as CSV or Parquet, cached."""
    path = OUT / f"open_orders_{rows}.{kind}"
    if path.is_file():
        return path
    import pandas as pd

    from data.generate import generate_open_orders

    csv_path = OUT / f"open_orders_{rows}.csv"
    if not csv_path.is_file():
        frame = generate_open_orders(rows, seed=5, as_of=AS_OF)
        frame.to_csv(csv_path.with_suffix(".tmp"), index=False)
        os.replace(csv_path.with_suffix(".tmp"), csv_path)
    if kind == "parquet":
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, na_values=[""])
        frame.to_parquet(path.with_suffix(".tmp"), index=False, row_group_size=100_000)
        os.replace(path.with_suffix(".tmp"), path)
    return path


# -- measuring ---------------------------------------------------------------------------
# Peak RSS is read by a small launcher process: a child forked straight from this (large)
# process would inherit its peak RSS in ru_maxrss, even after exec.
LAUNCHER = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:]);"
    " _, status, usage = os.wait4(p.pid, 0);"
    " sys.stderr.write(f'\\nMAXRSS_KB {usage.ru_maxrss}\\n');"
    " sys.exit(os.waitstatus_to_exitcode(status))"
)


def measure(command: list[str], label: str, **extra: Any) -> dict[str, Any]:
    """Wall time and peak RSS of one subprocess."""
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    seconds = time.perf_counter() - started
    stderr = process.stderr.decode()
    if process.returncode != 0:
        raise SystemExit(f"{label}: exit {process.returncode}\n{stderr[-2000:]}")
    peak_kb = int(stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
    result = {
        "label": label,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024),
        **extra,
    }
    print(json.dumps(result), flush=True)
    return result


def score_command(source: Path, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "service.cli",
        "score",
        str(source),
        "--out",
        str(output),
        "--model",
        str(model_dir()),
        "--as-of",
        AS_OF.isoformat(),
        *extra,
    ]


PANDAS_ROUND_TRIP = (
    "import sys, pandas as pd; pd.read_csv(sys.argv[1]).to_csv(sys.argv[2], index=False)"
)


def pandas_baseline(source: Path) -> dict[str, Any]:
    return measure(
        [sys.executable, "-c", PANDAS_ROUND_TRIP, str(source), str(OUT / "pandas_copy.csv")],
        "pandas read_csv + to_csv",
        rows=_rows(source),
    )


def _rows(source: Path) -> int:
    return int(source.name.split("_")[2].split(".")[0])


def against_pandas(rows: int, repeat: int) -> list[dict[str, Any]]:
    """pandas, score, pandas, ``repeat`` times; the ratio of each triple, then the median."""
    source = orders_file(rows, "csv")
    results: list[dict[str, Any]] = []
    ratios = []
    for _ in range(repeat):
        before = pandas_baseline(source)
        ours = measure(score_command(source, OUT / "scored.csv"), "score csv -> csv", rows=rows)
        after = pandas_baseline(source)
        ours["ratio_to_pandas"] = round(
            ours["seconds"] / ((before["seconds"] + after["seconds"]) / 2), 2
        )
        ratios.append(ours["ratio_to_pandas"])
        results += [before, ours, after]
    median = sorted(ratios)[len(ratios) // 2]
    print(json.dumps({"label": "ratio to pandas", "each": ratios, "median": median}), flush=True)
    return results


def chunk_sweep(rows: int, sizes: list[int]) -> list[dict[str, Any]]:
    source = orders_file(rows, "csv")
    return [
        measure(
            score_command(source, OUT / "scored.csv", "--chunk-rows", str(size)),
            f"score csv -> csv, --chunk-rows {size}",
            rows=rows,
            chunk_rows=size,
        )
        for size in sizes
    ]


def formats(rows: int) -> list[dict[str, Any]]:
    csv_in, parquet_in = orders_file(rows, "csv"), orders_file(rows, "parquet")
    return [
        measure(score_command(csv_in, OUT / "scored.csv"), "score csv -> csv", rows=rows),
        measure(
            score_command(parquet_in, OUT / "scored.parquet"), "score parquet -> parquet", rows=rows
        ),
    ]


def dask_runs(rows: int, repeat: int = 3) -> list[dict[str, Any]]:
    """Local engine vs the Dask engine's own local cluster (2 processes, start-up included),
    as local, dask, local triples (the ratio uses the mean of the two local runs around each
    Dask run, so it holds on a noisy, shared machine), then 1 and 2 workers of an already
    running cluster with the scoring code loaded (throughput without start-up)."""
    from distributed import LocalCluster

    source = orders_file(rows, "parquet")

    def local() -> dict[str, Any]:
        return measure(
            score_command(source, OUT / "scored.parquet"), "local engine, parquet", rows=rows
        )

    results: list[dict[str, Any]] = []
    ratios = []
    for _ in range(repeat):
        before = local()
        own = measure(
            score_command(source, OUT / "scored_dask.parquet", "--engine", "dask"),
            "dask engine, own local cluster (2 processes)",
            rows=rows,
        )
        after = local()
        own["ratio_to_local"] = round(
            own["seconds"] / ((before["seconds"] + after["seconds"]) / 2), 2
        )
        ratios.append(own["ratio_to_local"])
        results += [before, own, after]
    for workers in (1, 2):
        with LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            preload=["service.batch.dask_engine"],
        ) as cluster:
            results.append(
                measure(
                    score_command(
                        source,
                        OUT / "scored_dask.parquet",
                        "--engine",
                        "dask",
                        "--scheduler",
                        cluster.scheduler_address,
                    ),
                    f"dask engine, running cluster, {workers} worker(s)",
                    rows=rows,
                    workers=workers,
                )
            )
    median = sorted(ratios)[len(ratios) // 2]
    print(json.dumps({"label": "dask/local", "each": ratios, "median": median}), flush=True)
    return results


def stages(rows: int, chunk_rows: int, kind: str = "csv") -> dict[str, Any]:
    """Seconds per stage of the local engine, chunk by chunk, in this process (no threads:
    in the command, reading runs in a reader thread and writing in a writer thread)."""
    from model.artifact import load_model
    from service.batch.engine import (
        REJECTS_SCHEMA,
        SCORED_SCHEMA,
        PartitionResult,
        SeenIds,
        one_openmp_thread,
        partition_counts,
        scored_table,
        validate_partition,
    )
    from service.batch.files import (
        CsvSplitter,
        TableSink,
        csv_header,
        iter_parquet,
        parse_csv_chunk,
    )
    from service.policy import PolicyConfig
    from service.scoring import score_columns

    model, _ = load_model(model_dir())
    source = orders_file(rows, kind)
    names = ("read", "parse", "duplicates", "validate", "score", "output table", "write", "counts")
    clock: dict[str, float] = dict.fromkeys(names, 0.0)
    suffix = "csv" if kind == "csv" else "parquet"
    sink = TableSink(OUT / f"stages.{suffix}", SCORED_SCHEMA, free_text=("order_id",))
    rejects = TableSink(OUT / "stages.rejects.csv", REJECTS_SCHEMA)
    seen = SeenIds()
    policy = PolicyConfig()

    def timed(stage: str, step: Any, *args: Any) -> Any:
        mark = time.perf_counter()
        value = step(*args)
        clock[stage] += time.perf_counter() - mark
        return value

    if kind == "csv":
        header = csv_header(source, "csv")
        chunks = iter(CsvSplitter(source, "csv", header, chunk_rows))
    else:
        chunks = (raw for raw, _ in iter_parquet(source, chunk_rows))
    with one_openmp_thread():
        while (chunk := timed("read", next, chunks, None)) is not None:
            raw = timed("parse", parse_csv_chunk, chunk, header) if kind == "csv" else chunk
            earlier = timed("duplicates", seen.earlier, raw)
            checked = timed("validate", validate_partition, raw, AS_OF, earlier)
            scored = timed("score", score_columns, checked.valid, model, policy, AS_OF)
            table = timed("output table", scored_table, scored)
            timed("write", sink.write_table, table)
            timed("write", rejects.write_table, checked.rejects)
            result = PartitionResult(table, checked.rejects, checked.valid["destination_country"])
            timed("counts", partition_counts, result)
    sink.commit()
    rejects.commit()
    total = sum(clock.values())
    result = {
        "label": f"stages {kind}",
        "rows": rows,
        "chunk_rows": chunk_rows,
        "seconds": {k: round(v, 2) for k, v in clock.items()},
        "total": round(total, 2),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="pandas/score/pandas triples")
    parser.add_argument("--dask-repeat", type=int, default=3, help="local/dask/local triples")
    parser.add_argument("--big-rows", type=int, default=0, help="also measure memory at N rows")
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="*", default=[20_000, 50_000, 100_000, 200_000]
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=["pandas", "chunks", "formats", "big", "dask", "stages"],
        default=["pandas", "chunks", "formats", "big", "dask", "stages"],
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    model_dir()
    print(
        json.dumps(
            {
                "label": "machine",
                "cpus": os.cpu_count(),
                "load_avg": os.getloadavg(),
                "date": time.strftime("%Y-%m-%d %H:%M"),
            }
        ),
        flush=True,
    )
    if "stages" in args.only:
        stages(args.rows, 50_000)
    if "pandas" in args.only:
        against_pandas(args.rows, args.repeat)
    if "chunks" in args.only:
        chunk_sweep(args.rows, args.chunk_sizes)
    if "formats" in args.only:
        formats(args.rows)
    if "big" in args.only and args.big_rows:
        measure(
            score_command(orders_file(args.big_rows, "csv"), OUT / "scored_big.csv"),
            "score csv -> csv (memory at scale)",
            rows=args.big_rows,
        )
    if "dask" in args.only:
        dask_runs(args.rows, args.dask_repeat)
    for leftover in ("scored_dask.parquet",):
        shutil.rmtree(OUT / leftover, ignore_errors=True)


if __name__ == "__main__":
    main()
