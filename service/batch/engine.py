"""Batch scoring of open-order files in bounded memory, every input row accounted for.

``window-advisor score`` reads its input in chunks (:mod:`service.batch.files`), scores each
chunk with :func:`score_partition` (which calls :func:`service.scoring.score_raw`, the one
scoring function) and appends the results to hidden temporaries beside OUTPUT and the rejects
file, renamed into place only when the whole input is done. Each input row is either scored
or rejected with its line, order_id, column and reason; ``scored + rejected = input rows``.

An order_id already seen in an earlier chunk is rejected as a duplicate like one seen earlier
in the same chunk; :class:`SeenIds` remembers a 64-bit hash and the first line of every
order_id (12 bytes per distinct id), so results do not depend on the chunk size.

The Dask engine (:mod:`service.batch.dask_engine`) applies the same :func:`score_partition` to the
same raw partitions, so both engines give the same rows with the same values.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from model.errors import InputFileError
from model.predictor import AdvisorModel
from model.schema import OPEN_ORDER_COLUMNS
from service.batch.files import (
    BLANK,
    LINE_COLUMN,
    PROBLEM_COLUMN,
    CsvSplitter,
    TableSink,
    csv_header,
    default_rejects_path,
    head_rows,
    input_kind,
    iter_parquet,
    output_kind,
    parquet_columns,
    parse_csv_chunk,
)
from service.policy import PolicyConfig
from service.scoring import SCORED_COLUMNS, score_raw

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "REJECTS_SCHEMA",
    "SCORED_SCHEMA",
    "BatchJob",
    "BatchSummary",
    "PartitionResult",
    "SeenIds",
    "Terminated",
    "order_id_hashes",
    "print_summary",
    "run_local",
    "score_partition",
    "terminate_as_interrupt",
]

# Chosen by measurement (bench/bench_batch.py, bench/RESULTS.md): past ~50k rows a chunk
# gains little speed and costs memory in proportion.
DEFAULT_CHUNK_ROWS = 50_000

SCORED_SCHEMA = pa.schema(
    [
        ("order_id", pa.string()),
        ("action", pa.string()),
        ("extend_by_days", pa.int64()),
        ("new_deadline", pa.timestamp("ns")),
        ("days_remaining", pa.int64()),
        ("p_late", pa.float64()),
        ("p_late_after_extension", pa.float64()),
        ("respond_by", pa.timestamp("ns")),
        ("reasons", pa.string()),
        ("model_version", pa.string()),
        ("last_milestone", pa.string()),
        ("days_since_last_scan", pa.int64()),
    ]
)
assert tuple(SCORED_SCHEMA.names) == SCORED_COLUMNS
REJECTS_SCHEMA = pa.schema(
    [
        ("line", pa.int64()),
        ("order_id", pa.string()),
        ("column", pa.string()),
        ("reason", pa.string()),
    ]
)
UNPARSABLE = "(unparsable)"  # the ``column`` label of a row that is not a CSV record


# -- duplicates across chunks ------------------------------------------------------------
def order_id_hashes(order_id: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hash of each stripped order_id (stable across processes) and where one exists."""
    text = order_id.astype("string").str.strip()
    present = np.array(text.notna() & (text != ""), dtype=bool)
    values = text.to_numpy(dtype=object, na_value="")
    return pd.util.hash_array(values, categorize=False), present


class SeenIds:
    """The first line of every order_id hash seen so far, as sorted runs merged as they grow
    (like a log-structured merge tree), capped so no merge copies more than ``RUN_CAP`` ids."""

    RUN_CAP = 1 << 20

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(h) for h, _ in self._runs)

    def first_lines(self, hashes: np.ndarray) -> np.ndarray:
        """First line recorded for each hash, or -1 where it was never seen."""
        out = np.full(len(hashes), -1, dtype=np.int64)
        for run_hashes, run_lines in self._runs:
            at = np.minimum(np.searchsorted(run_hashes, hashes), len(run_hashes) - 1)
            hit = run_hashes[at] == hashes
            out[hit] = run_lines[at[hit]]
        return out

    def add(self, hashes: np.ndarray, lines: np.ndarray) -> None:
        """Record hashes not seen before (the first occurrence's line wins)."""
        if len(hashes) == 0:
            return
        unique, first = np.unique(hashes, return_index=True)
        lines = np.asarray(lines, dtype=np.int64)[first]
        compact = np.uint32 if int(lines.max()) < 2**32 else np.int64  # 12 bytes per id
        self._runs.append((unique, lines.astype(compact)))
        while len(self._runs) > 1:
            (h1, l1), (h2, l2) = self._runs[-2], self._runs[-1]
            if len(h1) > 2 * len(h2) or len(h1) + len(h2) > self.RUN_CAP:
                break
            self._runs[-2:] = [_merge_sorted(h1, l1, h2, l2)]

    def earlier(self, raw: pd.DataFrame) -> np.ndarray:
        """For each row of a raw partition: the line of an earlier chunk holding its order_id,
        or -1; then remember this partition's ids."""
        hashes, present = order_id_hashes(raw["order_id"])
        present = present & raw[PROBLEM_COLUMN].isna().to_numpy(dtype=bool)
        lines = raw[LINE_COLUMN].to_numpy(dtype=np.int64)
        out = np.full(len(raw), -1, dtype=np.int64)
        out[present] = self.first_lines(hashes[present])
        new = present & (out < 0)
        self.add(hashes[new], lines[new])
        return out


def _merge_sorted(
    h1: np.ndarray, l1: np.ndarray, h2: np.ndarray, l2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted runs (disjoint hashes) without a full sort or index copies."""
    at = np.searchsorted(h1, h2) + np.arange(len(h2))
    from_first = np.ones(len(h1) + len(h2), dtype=bool)
    from_first[at] = False
    hashes = np.empty(len(from_first), dtype=h1.dtype)
    lines = np.empty(len(from_first), dtype=np.result_type(l1, l2))
    hashes[at], lines[at] = h2, l2
    hashes[from_first], lines[from_first] = h1, l1
    return hashes, lines


# -- scoring one partition ---------------------------------------------------------------
@dataclass(frozen=True)
class PartitionResult:
    """Scored rows (input order), rejects (by line) and the destination of each scored row."""

    scored: pd.DataFrame
    rejects: pd.DataFrame
    destinations: np.ndarray
    blank_lines: int = 0


def _ids_or_none(values: pd.Series) -> np.ndarray:
    text = values.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), None).to_numpy(dtype=object, na_value=None)


def score_partition(
    raw: pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    earlier: np.ndarray | None = None,
) -> PartitionResult:
    """Score one raw partition: unparsable rows and ``earlier`` duplicates (first line of an
    order_id seen in an earlier partition, -1 otherwise) are rejected; the rest go through
    :func:`service.scoring.score_raw`."""
    lines = raw[LINE_COLUMN].to_numpy(dtype=np.int64)
    noted = raw[PROBLEM_COLUMN].notna().to_numpy(dtype=bool)
    blank = raw[PROBLEM_COLUMN].eq(BLANK).fillna(False).to_numpy(dtype=bool) & noted
    problem = noted & ~blank
    duplicate = np.zeros(len(raw), dtype=bool) if earlier is None else earlier >= 0
    parts: list[pd.DataFrame] = []
    if problem.any():
        parts.append(
            pd.DataFrame(
                {
                    "line": lines[problem],
                    "order_id": _ids_or_none(raw["order_id"][problem]),
                    "column": UNPARSABLE,
                    "reason": raw[PROBLEM_COLUMN][problem].to_numpy(dtype=object),
                }
            )
        )
    if duplicate.any():
        assert earlier is not None
        parts.append(
            pd.DataFrame(
                {
                    "line": lines[duplicate],
                    "order_id": _ids_or_none(raw["order_id"][duplicate]),
                    "column": "order_id",
                    "reason": [
                        f"duplicate order_id (first seen on line {n})" for n in earlier[duplicate]
                    ],
                }
            )
        )
    keep = ~problem & ~duplicate & ~blank
    rest = raw.loc[keep, [c for c in raw.columns if c in OPEN_ORDER_COLUMNS]]
    rest_lines = lines[keep]
    if len(rest):
        batch = score_raw(rest.reset_index(drop=True), model, policy, as_of, lines=rest_lines)
        scored, rejects = batch.scored, batch.rejects
        valid = ~np.isin(rest_lines, rejects["line"].to_numpy(dtype=np.int64))
        destinations = (
            rest["destination_country"]
            .astype("string")
            .str.strip()
            .str.upper()
            .to_numpy(dtype=object)[valid]
        )
        parts.append(rejects)
    else:
        scored = pd.DataFrame({c: pd.Series(dtype=object) for c in SCORED_COLUMNS})
        destinations = np.zeros(0, dtype=object)
    if parts:
        all_rejects = pd.concat([p.astype(object) for p in parts], ignore_index=True)
        all_rejects = all_rejects.sort_values("line", kind="stable", ignore_index=True)
    else:
        all_rejects = pd.DataFrame(columns=list(REJECTS_SCHEMA.names))
    return PartitionResult(
        scored=scored,
        rejects=all_rejects,
        destinations=destinations,
        blank_lines=int(blank.sum()),
    )


def partition_counts(result: PartitionResult) -> dict[str, Any]:
    """The counts of one partition that a :class:`BatchSummary` adds up (small, picklable)."""
    pairs = pd.DataFrame(
        {
            "destination": result.destinations,
            "action": result.scored["action"].to_numpy(dtype=object),
        }
    ).value_counts(sort=False)
    by_destination: Counter[tuple[str, str]] = Counter(
        {(str(d), str(a)): int(n) for (d, a), n in pairs.items()}
    )
    by_action: Counter[str] = Counter()
    for (_, action), n in by_destination.items():
        by_action[action] += n
    return {
        "scored": len(result.scored),
        "rejected": len(result.rejects),
        "blank_lines": result.blank_lines,
        "by_action": by_action,
        "by_destination": by_destination,
        "rejects_by_column": Counter(result.rejects["column"].tolist()),
    }


# -- the job, its summary and its run ----------------------------------------------------
@dataclass(frozen=True)
class BatchJob:
    """What to score with what, and where the results go."""

    input: Path
    output: Path
    rejects: Path
    model: AdvisorModel
    policy: PolicyConfig
    as_of: date
    chunk_rows: int = DEFAULT_CHUNK_ROWS

    @classmethod
    def create(
        cls,
        input_path: Path,
        output: Path,
        *,
        model: AdvisorModel,
        policy: PolicyConfig,
        as_of: date,
        rejects: Path | None = None,
        chunk_rows: int | None = None,
    ) -> BatchJob:
        rejects = rejects if rejects is not None else default_rejects_path(output)
        if rejects.resolve() == output.resolve():
            raise InputFileError(f"{rejects}: the rejects file cannot be OUTPUT itself")
        if input_path.resolve() in (output.resolve(), rejects.resolve()):
            raise InputFileError(f"{input_path}: INPUT cannot also be an output of the run")
        return cls(
            input_path, output, rejects, model, policy, as_of, chunk_rows or DEFAULT_CHUNK_ROWS
        )


@dataclass
class BatchSummary:
    """Counts of one run; ``input_rows == scored + rejected`` always."""

    engine: str
    input: Path
    output: Path
    rejects_path: Path
    scored: int = 0
    rejected: int = 0
    blank_lines: int = 0
    chunks: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    by_destination: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejects_by_column: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0
    workers: int = 0
    # Seconds from the start at which each phase of a Dask run ended (for benchmarks).
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def input_rows(self) -> int:
        return self.scored + self.rejected

    def add(self, result: PartitionResult) -> None:
        self.add_counts(**partition_counts(result))

    def add_counts(
        self,
        *,
        scored: int,
        rejected: int,
        blank_lines: int,
        by_action: Counter[str],
        by_destination: Counter[tuple[str, str]],
        rejects_by_column: Counter[str],
    ) -> None:
        self.scored += scored
        self.rejected += rejected
        self.blank_lines += blank_lines
        self.chunks += 1
        self.by_action.update(by_action)
        self.by_destination.update(by_destination)
        self.rejects_by_column.update(rejects_by_column)

    @property
    def invariant_line(self) -> str:
        return (
            f"scored {self.scored:,} + rejected {self.rejected:,} = {self.input_rows:,} input rows"
        )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so temporaries are cleaned up like on Ctrl-C."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def progress_bar(console: Console | None) -> Progress:
    """Rows done and rows/s; silent unless ``console`` is a terminal."""
    return Progress(
        TextColumn("[bold]scoring[/]"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:>12,} rows  {task.fields[rate]:>9,.0f} rows/s"),
        TimeElapsedColumn(),
        console=console,
        disable=console is None or not console.is_terminal,
        transient=False,
    )


RawChunks = Iterator[tuple[pd.DataFrame, int]]  # (raw partition, progress so far)


def raw_chunks(path: Path, chunk_rows: int) -> tuple[RawChunks, int]:
    """Raw partitions of a local input file and the progress total (bytes or rows)."""
    kind = input_kind(path, allow_directory=True)
    if kind in ("parquet", "parquet-dir"):
        parquet_columns(path)
        files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
        total = sum(f.stat().st_size for f in files)

        def parquet_chunks() -> RawChunks:
            yield from iter_parquet(path, chunk_rows)

        return parquet_chunks(), total
    header = csv_header(path, kind)
    splitter = CsvSplitter(path, kind, header, chunk_rows)

    def csv_chunks() -> RawChunks:
        for chunk in splitter:
            yield parse_csv_chunk(chunk, header), splitter.bytes_read

    return csv_chunks(), splitter.total_bytes


def run_local(job: BatchJob, console: Console | None = None) -> BatchSummary:
    """Stream INPUT through :func:`score_partition` into OUTPUT and the rejects file."""
    output_kind(job.output, allow_directory=False)
    output_kind(job.rejects, allow_directory=False)
    started = time.perf_counter()
    chunks, total = raw_chunks(job.input, job.chunk_rows)
    summary = BatchSummary("local", job.input, job.output, job.rejects)
    sinks: list[TableSink] = []
    writer: BackgroundWriter | None = None
    with terminate_as_interrupt(), one_openmp_thread(), progress_bar(console) as progress:
        task = progress.add_task("score", total=total or None, rows=0, rate=0.0)
        try:
            scored_sink = TableSink(job.output, SCORED_SCHEMA, free_text=("order_id",))
            sinks.append(scored_sink)
            rejects_sink = TableSink(job.rejects, REJECTS_SCHEMA)
            sinks.append(rejects_sink)
            writer = BackgroundWriter(scored_sink, rejects_sink)
            for raw, earlier, done in prefetch(with_earlier(chunks)):
                result = score_partition(raw, job.model, job.policy, job.as_of, earlier)
                writer.put(result.scored, result.rejects)
                summary.add(result)
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(
                    task,
                    completed=done,
                    rows=summary.input_rows,
                    rate=summary.input_rows / elapsed,
                )
            writer.close()
            for sink in sinks:
                sink.commit()
        except BaseException:
            if writer is not None:
                writer.stop()
            for sink in sinks:
                sink.abort()
            raise
        progress.update(task, completed=total)
    summary.wall_seconds = time.perf_counter() - started
    return summary


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """One OpenMP thread for the model while the run lasts, unless OMP_NUM_THREADS is set.

    Reading and writing already run in their own threads; OpenMP threads spinning beside
    them made a 1M-row run 1.7x slower on 2 cores (bench/RESULTS.md)."""
    if os.environ.get("OMP_NUM_THREADS"):
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def with_earlier(chunks: RawChunks) -> Iterator[tuple[pd.DataFrame, np.ndarray, int]]:
    """Add to each raw partition the earlier-chunk line of its order_ids (in chunk order)."""
    seen = SeenIds()
    for raw, done in chunks:
        yield raw, seen.earlier(raw), done


class BackgroundWriter:
    """Appends (scored, rejects) to their sinks in a thread, in order, while the next chunk
    is scored; an error in the thread is raised by the next :meth:`put` or :meth:`close`."""

    def __init__(self, scored: TableSink, rejects: TableSink) -> None:
        import queue

        self._queue: queue.Queue[tuple[pd.DataFrame, pd.DataFrame] | None] = queue.Queue(1)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._sinks = (scored, rejects)
        self._thread = threading.Thread(target=self._run, name="batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            try:
                for sink, frame in zip(self._sinks, item, strict=True):
                    sink.write(frame)
            except BaseException as exc:  # handed to the caller
                self._error = exc
                return

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, scored: pd.DataFrame, rejects: pd.DataFrame) -> None:
        import queue

        while True:
            self._check()
            try:
                self._queue.put((scored, rejects), timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._check()
                    raise RuntimeError("batch writer stopped") from None

    def close(self) -> None:
        """Wait until everything is written."""
        self._queue.put(None)
        self._thread.join()
        self._check()

    def stop(self) -> None:
        """Abandon the remaining writes (the caller removes the files)."""
        import queue

        self._stop.set()
        with suppress(queue.Full):  # a full queue: the thread sees the stop flag instead
            self._queue.put_nowait(None)
        self._thread.join(timeout=10)


def prefetch(chunks: Iterator[Any], depth: int = 1) -> Iterator[Any]:
    """Read and parse the next chunk in a background thread while this one is scored
    (pyarrow parsing releases the GIL). Errors surface in the caller, in order."""
    import queue

    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in chunks:
                while not stop.is_set():
                    try:
                        box.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("done", None))
        except BaseException as exc:  # handed to the consumer
            box.put(("error", exc))

    worker = threading.Thread(target=produce, name="batch-reader", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        worker.join(timeout=5)


# -- reporting ---------------------------------------------------------------------------
def print_summary(summary: BatchSummary, console: Console, top: int = 10) -> None:
    """Counts by action and by destination, rejects, wall time."""
    total = max(summary.scored, 1)
    actions = Table(title="actions")
    actions.add_column("action")
    actions.add_column("orders", justify="right")
    actions.add_column("share", justify="right")
    for action, n in sorted(summary.by_action.items(), key=lambda kv: -kv[1]):
        actions.add_row(action, f"{n:,}", f"{n / total:.1%}")
    console.print(actions)

    names = sorted(summary.by_action, key=lambda a: -summary.by_action[a])
    per_country: dict[str, Counter[str]] = {}
    for (country, action), n in summary.by_destination.items():
        per_country.setdefault(country, Counter())[action] += n
    ranked = sorted(per_country.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))
    destinations = Table(title=f"by destination (top {min(top, len(ranked))} of {len(ranked)})")
    destinations.add_column("destination")
    destinations.add_column("orders", justify="right")
    for name in names:
        destinations.add_column(name, justify="right")
    shown, rest = ranked[:top], ranked[top:]
    for country, counts in shown:
        destinations.add_row(
            country, f"{sum(counts.values()):,}", *(f"{counts[a]:,}" for a in names)
        )
    if rest:
        other: Counter[str] = Counter()
        for _, counts in rest:
            other.update(counts)
        destinations.add_row(
            f"other ({len(rest)})", f"{sum(other.values()):,}", *(f"{other[a]:,}" for a in names)
        )
    if ranked:
        console.print(destinations)

    totals = Table(title="batch")
    totals.add_column("measure")
    totals.add_column("value", justify="right")
    totals.add_row("input rows", f"{summary.input_rows:,}")
    totals.add_row("scored", f"{summary.scored:,}")
    totals.add_row("rejected", f"{summary.rejected:,}")
    for column, n in sorted(summary.rejects_by_column.items(), key=lambda kv: -kv[1]):
        totals.add_row(f"  rejected on {column}", f"{n:,}")
    if summary.blank_lines:
        totals.add_row("blank lines skipped", f"{summary.blank_lines:,}")
    totals.add_row("output", str(summary.output))
    totals.add_row("rejects file", str(summary.rejects_path))
    engine = summary.engine + (f" ({summary.workers} workers)" if summary.workers else "")
    totals.add_row("engine", engine)
    totals.add_row("chunks", f"{summary.chunks:,}")
    totals.add_row("wall time", f"{summary.wall_seconds:.1f} s")
    rate = summary.input_rows / max(summary.wall_seconds, 1e-9)
    totals.add_row("throughput", f"{rate:,.0f} rows/s")
    console.print(totals)
    if summary.rejected and summary.rejects_path.is_file():
        first = head_rows(summary.rejects_path, top)
        rejects = Table(title=f"first {len(first)} of {summary.rejected:,} rejected rows")
        for column in REJECTS_SCHEMA.names:
            rejects.add_column(column)
        for row in first.itertuples(index=False):
            rejects.add_row(*(str(value) for value in row))
        console.print(rejects)
