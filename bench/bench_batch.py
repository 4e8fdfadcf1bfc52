"""Batch scoring at scale: wall time against plain pandas, start-up, peak memory, Dask.

Every measured run is a fresh subprocess of ``window-advisor score`` (or of a plain pandas
copy of the same file: ``read_csv`` + ``to_csv``, ``read_parquet`` + ``to_parquet``), reaped
with ``os.wait4`` so its own peak RSS is known. The pandas copy runs right before and after
each scoring run and the ratio uses their mean, so it holds on a noisy, shared machine.

    python bench/bench_batch.py                                  # 1M rows, everything
    python bench/bench_batch.py --big-rows 5000000 --only big    # 5M: CSV and Parquet vs pandas
    (``--only big typed``: typed Parquet at 5M too)
    python bench/bench_batch.py --only startup                   # a one-row file, 9 times
    python bench/bench_batch.py --only stages                    # where the time goes
    python bench/bench_batch.py --only typed                     # typed Parquet (timestamps...)
    python bench/bench_batch.py --baseline ../old-checkout ...   # the same runs of other code

``--baseline DIR`` also times the score command of the checkout in DIR (run from there, with
this environment), inside the same triples, for before/after figures measured together.

Inputs (generated open orders, a small trained model) are cached under bench/out/.
Prints one JSON object per measurement (bench/RESULTS.md tabulates them).
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
    """Generated open orders (seed 5) as CSV, Parquet of text columns (as read from the CSV)
    or ``typed`` Parquet (timestamps, int64, float64: what an export holds), cached."""
    path = OUT / (
        f"open_orders_{rows}.typed.parquet" if kind == "typed" else f"open_orders_{rows}.{kind}"
    )
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
    if kind == "typed":
        dates = ["shipped_at", "deadline", "delivered_at", "dispute_opened_at"]
        frame = pd.read_csv(csv_path, parse_dates=dates, dtype={"order_id": str})
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
    " sys.stderr.write(f'CPU_S {usage.ru_utime + usage.ru_stime}\\n');"
    " sys.exit(os.waitstatus_to_exitcode(status))"
)


def measure(
    command: list[str], label: str, cwd: Path | None = None, **extra: Any
) -> dict[str, Any]:
    """Wall time, CPU time and peak RSS of one subprocess."""
    started = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        cwd=cwd,
    )
    seconds = time.perf_counter() - started
    stderr = process.stderr.decode()
    if process.returncode != 0:
        raise SystemExit(f"{label}: exit {process.returncode}\n{stderr[-2000:]}")
    peak_kb = int(stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
    cpu = float(stderr.rsplit("CPU_S", 1)[1].split()[0])
    result = {
        "label": label,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
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


PANDAS_COPY = {
    "csv": "import sys, pandas as pd; pd.read_csv(sys.argv[1]).to_csv(sys.argv[2], index=False)",
    "parquet": (
        "import sys, pandas as pd;"
        " pd.read_parquet(sys.argv[1]).to_parquet(sys.argv[2], index=False)"
    ),
}


def pandas_baseline(source: Path, kind: str = "csv") -> dict[str, Any]:
    reader, writer = ("read_csv", "to_csv") if kind == "csv" else ("read_parquet", "to_parquet")
    kind = "parquet" if kind == "typed" else kind
    return measure(
        [sys.executable, "-c", PANDAS_COPY[kind], str(source), str(OUT / f"pandas_copy.{kind}")],
        f"pandas {reader} + {writer}",
        rows=_rows(source),
    )


def _rows(source: Path) -> int:
    return int(source.name.split("_")[2].split(".")[0])


def against_pandas(
    rows: int, repeat: int, kind: str = "csv", baseline: Path | None = None
) -> list[dict[str, Any]]:
    """pandas, score, pandas, ``repeat`` times; the ratio of each triple, then the median.
    With ``baseline``, each triple also times the score command of that checkout."""
    source = orders_file(rows, kind)
    results: list[dict[str, Any]] = []
    ratios: dict[str, list[float]] = {"this code": [], "baseline": []}
    for _ in range(repeat):
        before = pandas_baseline(source, kind)
        runs = [("this code", None)] + ([("baseline", baseline)] if baseline else [])
        suffix = "parquet" if kind == "typed" else kind
        timed = [
            measure(
                score_command(source, OUT / f"scored.{suffix}"),
                f"score {kind} -> {suffix} ({name})",
                cwd=where,
                rows=rows,
            )
            for name, where in runs
        ]
        after = pandas_baseline(source, kind)
        mean = (before["seconds"] + after["seconds"]) / 2
        for (name, _), ours in zip(runs, timed, strict=True):
            ours["ratio_to_pandas"] = round(ours["seconds"] / mean, 2)
            ratios[name].append(ours["ratio_to_pandas"])
        results += [before, *timed, after]
    for name, each in ratios.items():
        if each:
            median = sorted(each)[len(each) // 2]
            summary = {"label": f"{kind} ratio to pandas ({name})", "rows": rows, "each": each}
            print(json.dumps({**summary, "median": median}), flush=True)
    return results


def startup(repeat: int, baseline: Path | None = None) -> list[dict[str, Any]]:
    """Scoring a one-row file, ``repeat`` times (medians), beside the floor: importing what
    loading the model needs (pandas, scikit-learn's ensemble module)."""
    source = OUT / "open_orders_1.csv"
    if not source.is_file():
        lines = orders_file(1_000_000, "csv").open().readlines()[:2]
        source.write_text("".join(lines))
    floor = [sys.executable, "-c", "import pandas, sklearn.ensemble"]
    libraries = "pandas, pyarrow.csv, pyarrow.parquet, joblib, typer, rich.table, pydantic_settings"
    runs: list[tuple[str, list[str], Path | None]] = [
        ("score one row (this code)", score_command(source, OUT / "scored_one.csv"), None),
        ("import pandas + sklearn.ensemble", floor, None),
        # What `score` cannot do without (scikit-learn is no longer loaded for known lanes).
        (f"import {libraries}", [sys.executable, "-c", f"import {libraries}"], None),
    ]
    if baseline:
        runs.append(
            ("score one row (baseline)", score_command(source, OUT / "scored_one.csv"), baseline)
        )
    # Bytecode compiled beforehand, as ``pip install`` does: with PYTHONDONTWRITEBYTECODE set
    # (as on this machine) every run would otherwise compile the project's modules again.
    for where in {ROOT, *([baseline] if baseline else [])}:
        compile_all = [sys.executable, "-m", "compileall", "-q", "model", "service", "data"]
        subprocess.run(compile_all, cwd=where, check=True, capture_output=True)
    results = []
    for label, command, where in runs:
        times = [measure(command, label, cwd=where)["seconds"] for _ in range(repeat)]
        result = {"label": f"{label}: median", "seconds": sorted(times)[len(times) // 2]}
        print(json.dumps(result), flush=True)
        results.append(result)
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
    """CPU seconds per stage of the local engine, chunk by chunk, in one thread of this
    process (in the command, read to validate run in a reader thread, score in the main
    thread, output table to counts in a writer thread)."""
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
    from service.scoring import score

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
        mark = time.process_time()  # CPU seconds: steadier than wall time on a shared machine
        value = step(*args)
        clock[stage] += time.process_time() - mark
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
            scored = timed("score", score, checked.valid, model, policy, AS_OF)
            table = timed("output table", scored_table, scored)
            timed("write", sink.write_table, table)
            timed("write", rejects.write_table, checked.rejects)
            part = PartitionResult(table, checked.rejects, checked.valid["destination_country"])
            timed("counts", partition_counts, part)
    sink.commit()
    rejects.commit()
    total = sum(clock.values())
    result = {
        "label": f"stages {kind}",
        "rows": rows,
        "chunk_rows": chunk_rows,
        "cpu_seconds": {k: round(v, 2) for k, v in clock.items()},
        "total": round(total, 2),
    }
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="pandas/score/pandas triples")
    parser.add_argument("--dask-repeat", type=int, default=3, help="local/dask/local triples")
    parser.add_argument("--big-rows", type=int, default=0, help="also compare at N rows")
    parser.add_argument("--startup-repeat", type=int, default=9)
    parser.add_argument("--baseline", type=Path, help="a checkout of other code to time too")
    parser.add_argument(
        "--chunk-sizes", type=int, nargs="*", default=[20_000, 50_000, 100_000, 200_000]
    )
    choices = ["stages", "startup", "pandas", "parquet", "typed", "chunks", "big", "dask"]
    parser.add_argument("--only", nargs="*", choices=choices, default=choices)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    model_dir()
    baseline = args.baseline.resolve() if args.baseline else None
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
        stages(args.rows, 50_000, "csv")
        stages(args.rows, 50_000, "parquet")
    if "startup" in args.only:
        startup(args.startup_repeat, baseline)
    if "pandas" in args.only:
        against_pandas(args.rows, args.repeat, "csv", baseline)
    if "parquet" in args.only:
        against_pandas(args.rows, args.repeat, "parquet", baseline)
    if "typed" in args.only:
        stages(args.rows, 50_000, "typed")
        against_pandas(args.rows, args.repeat, "typed", baseline)
    if "chunks" in args.only:
        chunk_sweep(args.rows, args.chunk_sizes)
    if "big" in args.only and args.big_rows:
        against_pandas(args.big_rows, args.repeat, "csv", baseline)
        against_pandas(args.big_rows, args.repeat, "parquet", baseline)
        if "typed" in args.only:
            against_pandas(args.big_rows, args.repeat, "typed", baseline)
    if "dask" in args.only:
        dask_runs(args.rows, args.dask_repeat)
    for leftover in ("scored_dask.parquet",):
        shutil.rmtree(OUT / leftover, ignore_errors=True)


if __name__ == "__main__":
    main()
