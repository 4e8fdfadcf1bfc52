"""``score --engine dask``: the batch scored with ``dask.dataframe`` ``map_partitions``.

The input is cut into pieces on the client (CSV: byte ranges of whole records, found by the
same splitter as the local engine; Parquet: row groups), read on the workers into the same
raw partitions as the local engine (:func:`service.batch.files.parse_csv_chunk`,
:func:`service.batch.files.read_parquet_piece`) with ``dd.from_map``, and scored with
``map_partitions`` calling :func:`service.batch.score_partition`. Results are therefore
identical to the local engine's: same rows, same values, same order.

One pass over the partitions in the common case: each partition is scored and written by its
worker to ``part.NNNNN.parquet`` files in hidden temporary directories beside OUTPUT, knowing
only the duplicates inside the partition, and returns its counts with the hashes and lines of
its order_ids. The client takes the partitions in order as they finish and finds the ids an
earlier partition already holds (the duplicate rule of the local engine); only a partition
holding such an id is read and scored again, with those lines, overwriting its part files.
The client appends each finished partition's parts, in order, to OUTPUT (file output) and to
the rejects file while later partitions are still being scored, or renames the directory of
parts to OUTPUT (directory output).

Without ``--scheduler`` the engine starts its own local cluster (one single-threaded worker
process per core, on 127.0.0.1, no dashboard) in a background thread; while its workers start
and import the scoring code, the client scores a sample of the first piece to fill the
model's logit tables, which the workers then receive with the model.

Workers must see INPUT and OUTPUT's directory at the same paths as the client (a shared
file system); see ``service/BATCH_README_SECTION.md``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from model.errors import AdvisorError, InputFileError
from model.events import ScanTable
from model.predictor import AdvisorModel
from model.schema import OPEN_ORDER_COLUMNS
from service.batch.engine import (
    REJECTS_SCHEMA,
    SCORED_SCHEMA,
    BatchJob,
    BatchSummary,
    SeenIds,
    load_job_scans,
    one_openmp_thread,
    order_id_hashes,
    partition_counts,
    progress_bar,
    score_partition,
    terminate_as_interrupt,
)
from service.batch.files import (
    LINE_COLUMN,
    PROBLEM_COLUMN,
    CsvHeader,
    CsvSplitter,
    ParquetPiece,
    TableSink,
    csv_header,
    input_kind,
    output_kind,
    parquet_columns,
    parquet_pieces,
    parse_csv_chunk,
    read_parquet_piece,
    split_chunk_bytes,
    temp_path_for,
)
from service.policy import PolicyConfig

__all__ = ["CsvPiece", "cluster_client", "plan_pieces", "run_dask"]


@dataclass(frozen=True)
class CsvPiece:
    """Whole records of a CSV file: ``length`` bytes from ``offset`` (of the decompressed
    stream), the first on line ``first_line``."""

    path: str
    kind: str
    header: CsvHeader
    offset: int
    length: int
    first_line: int


Piece = CsvPiece | ParquetPiece


def plan_pieces(path: Path, chunk_rows: int) -> tuple[list[Piece], list[str]]:
    """The pieces of INPUT (one partition each) and the known columns they hold."""
    kind = input_kind(path, allow_directory=True)
    if kind in ("parquet", "parquet-dir"):
        names = parquet_columns(path)
        return list(parquet_pieces(path, chunk_rows)), [n for n in names if n in OPEN_ORDER_COLUMNS]
    header = csv_header(path, kind)
    absolute = str(path.resolve())
    pieces: list[Piece] = [
        CsvPiece(absolute, kind, header, chunk.offset, len(chunk.data), chunk.first_line)
        for chunk in CsvSplitter(path, kind, header, chunk_rows)
    ]
    return pieces, header.known


def _read_range(piece: CsvPiece) -> bytes:
    if piece.kind == "csv.gz":  # no random access: decompress up to the piece
        with gzip.open(piece.path, "rb") as handle:
            skip = piece.offset
            while skip:
                skip -= len(handle.read(min(skip, 1 << 22)))
            return handle.read(piece.length)
    with open(piece.path, "rb") as handle:
        handle.seek(piece.offset)
        return handle.read(piece.length)


def read_piece(piece: Piece) -> pa.Table:
    """The raw partition of one piece (same rows and lines as the local engine's chunks)."""
    if isinstance(piece, ParquetPiece):
        return read_parquet_piece(piece)
    chunk = split_chunk_bytes(_read_range(piece), piece.first_line, piece.offset)
    return parse_csv_chunk(chunk, piece.header)


def load_piece(piece: Piece) -> pd.DataFrame:
    """:func:`read_piece` as the pandas frame a Dask partition must be (scoring turns it
    back into the same Arrow table)."""
    return read_piece(piece).to_pandas()


def _raw_meta(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame[LINE_COLUMN] = pd.Series(dtype=np.int64)
    frame[PROBLEM_COLUMN] = pd.Series(dtype=object)
    return frame


# -- worker-side functions (module level: pickled by reference) ------------------------
def partition_ids(raw: pd.DataFrame) -> pd.DataFrame:
    """Position, hash and line of every order_id present in a parsed row, in row order."""
    hashes, present = order_id_hashes(pa.array(raw["order_id"]))
    present = present & raw[PROBLEM_COLUMN].isna().to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "position": np.flatnonzero(present).astype(np.int64),
            "hash": hashes[present],
            "line": raw[LINE_COLUMN].to_numpy(dtype=np.int64)[present],
        }
    )


def score_and_write(
    raw: pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: Any,
    scored_dir: str,
    rejects_dir: str,
    number: int,
    earlier: tuple[np.ndarray, np.ndarray] | None = None,
    scans: ScanTable | None = None,
) -> dict[str, Any]:
    """Score partition ``number`` with :func:`score_partition`, ``earlier`` = (positions,
    first lines) of its rows whose order_id an earlier partition holds, ``scans`` the events
    file's table; write its two part files (replacing any from a previous attempt) and
    return its counts (with its scans dated before shipment)."""
    first = np.full(len(raw), -1, dtype=np.int64)
    if earlier is not None:
        positions, lines = earlier
        first[positions] = lines
    result = score_partition(raw, model, policy, as_of, first, scans)
    name = f"part.{number:05d}.parquet"
    pq.write_table(result.scored, os.path.join(scored_dir, name))
    pq.write_table(result.rejects, os.path.join(rejects_dir, name))
    return partition_counts(result)


def score_first(
    raw: pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: Any,
    scored_dir: str,
    rejects_dir: str,
    scans: ScanTable | None = None,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The one pass: score and write a partition as if no earlier partition held its ids;
    return (one row) its number, counts and order_ids (:func:`partition_ids`)."""
    number = int(partition_info["number"]) if partition_info else 0
    counts = score_and_write(
        raw, model, policy, as_of, scored_dir, rejects_dir, number, scans=scans
    )
    return pd.DataFrame({"partition": [number], "counts": [counts], "ids": [partition_ids(raw)]})


def rescore_piece(
    piece: Piece,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: Any,
    scored_dir: str,
    rejects_dir: str,
    scans: ScanTable | None,
    number: int,
    earlier: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Read piece ``number`` again and score it knowing its ids seen in earlier partitions."""
    raw = load_piece(piece)
    return score_and_write(
        raw, model, policy, as_of, scored_dir, rejects_dir, number, earlier, scans
    )


_FIRST_META = pd.DataFrame(
    {
        "partition": pd.Series(dtype=np.int64),
        "counts": pd.Series(dtype=object),
        "ids": pd.Series(dtype=object),
    }
)


# -- client side ---------------------------------------------------------------------------
# Imported by each worker of our own local cluster while it starts (scikit-learn, pandas, the
# scoring code), in parallel with the client's warm-up rather than after it, when the model
# arrives: the model was ready on 2 workers 5.2 s after the start instead of 6.8 s (2 cores).
WORKER_PRELOAD = ("service.batch.dask_engine",)
# Rows of the first piece the client scores (and discards) while its local cluster starts, to
# fill the model's logit tables that the workers then receive with it: 3,100 of the ~3,600
# tables of the 1M-row bench file, 1.7 s on a free core, within the workers' start-up;
# without them each worker spent ~2.3 s on the tables in its first partition.
WARM_ROWS = 50_000


class Cluster:
    """The client side of a run: a client of a running scheduler, or of our own local cluster
    whose workers start in a background thread while the client does its own work."""

    def __init__(self, client: Any = None, starting: Future[Any] | None = None) -> None:
        self._client = client
        self._starting = starting

    @property
    def starting(self) -> bool:
        """Whether our own local cluster is (or was) being started for this run."""
        return self._starting is not None

    def ready(self) -> Any:
        """The client, once the workers of our own local cluster have started (a failure to
        start them is raised here)."""
        if self._client is None:
            from distributed import Client

            assert self._starting is not None
            self._client = Client(self._starting.result())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._starting is not None:
            try:
                local = self._starting.result()
            except Exception:  # it failed to start: nothing to close
                return
            local.close()


def _start_local_cluster(workers: int) -> Any:
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        preload=list(WORKER_PRELOAD),
    )


@contextmanager
def cluster_client(scheduler: str | None, n_workers: int | None = None) -> Iterator[Cluster]:
    """A client of the scheduler at ``scheduler``, or a new local cluster on 127.0.0.1 still
    starting (:meth:`Cluster.ready` waits for it)."""
    if scheduler:
        from distributed import Client

        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise AdvisorError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        with client:
            yield Cluster(client)
        return
    workers = n_workers or max(1, min(os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(1, thread_name_prefix="dask-cluster-start") as pool:
        cluster = Cluster(starting=pool.submit(_start_local_cluster, workers))
        try:
            yield cluster
        finally:
            cluster.close()


class EarlierIds:
    """The ids of each partition that an earlier partition holds, found in partition order
    (as the local engine does chunk by chunk) while partitions arrive in any order."""

    def __init__(self) -> None:
        self._seen = SeenIds()
        self._waiting: dict[int, pd.DataFrame] = {}
        self.next = 0  # partitions before this one are done

    def add(
        self, number: int, ids: pd.DataFrame
    ) -> list[tuple[int, tuple[np.ndarray, np.ndarray] | None]]:
        """Take the ids of partition ``number``; return, for each partition now in order,
        the positions and first lines of its rows seen earlier (None when there are none)."""
        self._waiting[number] = ids
        ready: list[tuple[int, tuple[np.ndarray, np.ndarray] | None]] = []
        while self.next in self._waiting:
            ids = self._waiting.pop(self.next)
            hashes = ids["hash"].to_numpy(dtype=np.uint64)
            lines = ids["line"].to_numpy(dtype=np.int64)
            first = self._seen.first_lines(hashes)
            hit = first >= 0
            earlier = None
            if hit.any():
                earlier = (ids["position"].to_numpy(dtype=np.int64)[hit], first[hit])
            self._seen.add(hashes[~hit], lines[~hit])
            ready.append((self.next, earlier))
            self.next += 1
        return ready


class PartsInOrder:
    """Appends each partition's part files to their sinks, in partition order, as soon as the
    partition and all before it are final (while later ones are still being scored)."""

    def __init__(self, sinks: list[tuple[Path, TableSink]]) -> None:
        self._sinks = sinks  # (directory of parts, sink)
        self._final: set[int] = set()
        self.written = 0

    def final(self, number: int) -> None:
        self._final.add(number)
        while self.written in self._final:
            name = f"part.{self.written:05d}.parquet"
            for directory, sink in self._sinks:
                sink.write_table(pq.read_table(directory / name))
            self._final.discard(self.written)
            self.written += 1


def _replace_directory(source: Path, target: Path) -> None:
    if target.exists():
        if not target.is_dir():
            raise InputFileError(f"{target}: exists and is not a directory")
        old = temp_path_for(target, "old")
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)


def warm_model(job: BatchJob, piece: Piece, rows: int = WARM_ROWS) -> None:
    """Fill the model's logit tables from the first ``rows`` rows of ``piece`` (the workers
    then receive them with the model instead of each computing them)."""
    raw = read_piece(piece)
    with one_openmp_thread():  # the other core starts the workers
        score_partition(raw.slice(0, rows), job.model, job.policy, job.as_of)


def _score_on_cluster(
    job: BatchJob,
    pieces: list[Piece],
    columns: list[str],
    cluster: Cluster,
    scored_dir: Path,
    rejects_dir: Path,
    on_final: Callable[[int, dict[str, Any]], None],
    summary: BatchSummary,
    started: float,
    scans: ScanTable | None = None,
) -> None:
    """Score every partition once (one graph: each piece is read once), then again only those
    holding an id of an earlier partition; ``on_final(number, counts)`` as each is final."""
    import dask
    import dask.dataframe as dd
    from distributed import as_completed

    phases = summary.phases
    if cluster.starting:  # the client would only wait: warm the model meanwhile
        warm_model(job, pieces[0])
        phases["warm"] = time.perf_counter() - started
    with dask.config.set({"dataframe.convert-string": False}):  # the local engine's dtypes
        raw = dd.from_map(load_piece, pieces, meta=_raw_meta(columns), enforce_metadata=False)
    client = cluster.ready()
    summary.workers = len(client.scheduler_info()["workers"])
    phases["workers"] = time.perf_counter() - started
    model = client.scatter(job.model, broadcast=True, hash=False)
    table = None if scans is None else client.scatter(scans, broadcast=True, hash=False)
    phases["scatter"] = time.perf_counter() - started
    args = (model, job.policy, job.as_of, str(scored_dir), str(rejects_dir), table)
    first = raw.map_partitions(score_first, *args, meta=_FIRST_META, enforce_metadata=False)
    running = as_completed(client.compute(first.to_delayed()))
    phases["submitted"] = time.perf_counter() - started
    earlier_ids = EarlierIds()
    first_counts: dict[int, dict[str, Any]] = {}  # scored once, not yet in order
    again: dict[str, int] = {}  # key of a second scoring -> its partition
    for future in running:
        if future.key in again:
            on_final(again.pop(future.key), future.result())
            continue
        row = future.result()
        number = int(row["partition"].iloc[0])
        first_counts[number] = row["counts"].iloc[0]
        for ready, earlier in earlier_ids.add(number, row["ids"].iloc[0]):
            counts = first_counts.pop(ready)
            if earlier is None:
                on_final(ready, counts)
                continue
            rescore = client.submit(
                rescore_piece, pieces[ready], *args, ready, earlier, pure=False, priority=1
            )
            again[rescore.key] = ready
            running.add(rescore)
        if earlier_ids.next == len(pieces):
            phases.setdefault("first_pass", time.perf_counter() - started)


def _empty_parts(scored_dir: Path, rejects_dir: Path) -> dict[str, Any]:
    """A header without rows: one empty part of each kind, no cluster needed."""
    pq.write_table(SCORED_SCHEMA.empty_table(), scored_dir / "part.00000.parquet")
    pq.write_table(REJECTS_SCHEMA.empty_table(), rejects_dir / "part.00000.parquet")
    return {
        "scored": 0,
        "rejected": 0,
        "blank_lines": 0,
        "by_action": Counter(),
        "by_destination": Counter(),
        "rejects_by_column": Counter(),
    }


def run_dask(
    job: BatchJob,
    *,
    scheduler: str | None = None,
    console: Console | None = None,
    n_workers: int | None = None,
) -> BatchSummary:
    """Score ``job`` on a Dask cluster; same outputs as :func:`service.batch.run_local`."""
    started = time.perf_counter()
    out_kind = output_kind(job.output, allow_directory=True)
    output_kind(job.rejects, allow_directory=False)
    pieces, columns = plan_pieces(job.input, job.chunk_rows)
    summary = BatchSummary("dask", job.input, job.output, job.rejects)
    scans = load_job_scans(job, summary)
    job.output.parent.mkdir(parents=True, exist_ok=True)
    scored_dir = temp_path_for(job.output, "parts")
    rejects_dir = temp_path_for(job.output, "rejects-parts")
    sinks: list[TableSink] = []
    phases = summary.phases
    with terminate_as_interrupt(), progress_bar(console) as progress:
        task = progress.add_task("score", total=len(pieces) or None, rows=0, rate=0.0)
        counts_by_number: dict[int, dict[str, Any]] = {}

        def on_final(number: int, counts: dict[str, Any]) -> None:
            counts_by_number[number] = counts
            parts.final(number)
            rows = sum(c["scored"] + c["rejected"] for c in counts_by_number.values())
            rate = rows / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rows=rows, rate=rate)

        try:
            scored_dir.mkdir()
            rejects_dir.mkdir()
            sinks.append(TableSink(job.rejects, REJECTS_SCHEMA))
            in_order = [(rejects_dir, sinks[0])]
            if out_kind != "parquet-dir":
                sinks.append(TableSink(job.output, SCORED_SCHEMA, free_text=("order_id",)))
                in_order.append((scored_dir, sinks[1]))
            parts = PartsInOrder(in_order)
            phases["plan"] = time.perf_counter() - started
            if pieces:
                with cluster_client(scheduler, n_workers) as cluster:
                    phases["cluster"] = time.perf_counter() - started
                    _score_on_cluster(
                        job,
                        pieces,
                        columns,
                        cluster,
                        scored_dir,
                        rejects_dir,
                        on_final,
                        summary,
                        started,
                        scans,
                    )
                    phases["scored"] = time.perf_counter() - started
            else:
                on_final(0, _empty_parts(scored_dir, rejects_dir))
            for number in sorted(counts_by_number):
                summary.add_counts(**counts_by_number[number])
            if summary.scans is not None:
                summary.scans.write_rejects()
            for sink in sinks:
                sink.commit()
            if out_kind == "parquet-dir":
                _replace_directory(scored_dir, job.output)
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
        finally:
            shutil.rmtree(scored_dir, ignore_errors=True)
            shutil.rmtree(rejects_dir, ignore_errors=True)
    summary.wall_seconds = time.perf_counter() - started
    phases["done"] = summary.wall_seconds
    return summary
