"""``score --engine dask``: the batch scored with ``dask.dataframe`` ``map_partitions``.

The input is cut into pieces on the client (CSV: byte ranges of whole records, found by the
same splitter as the local engine; Parquet: row groups), read on the workers into the same
raw partitions as the local engine (:func:`service.batch_io.parse_csv_chunk`,
:func:`service.batch_io.read_parquet_piece`) with ``dd.from_map``, and scored with
``map_partitions`` calling :func:`service.batch.score_partition`. Results are therefore
identical to the local engine's: same rows, same values, same order.

Two passes over the partitions:

1. each partition returns the hashes and lines of its order_ids; the client finds, in
   partition order, the ids already seen in an earlier partition (the duplicate rule);
2. each partition is scored and written by its worker to ``part.NNNNN.parquet`` files in
   hidden temporary directories beside OUTPUT; the client then renames the directory to
   OUTPUT (directory output) or concatenates the parts in order into OUTPUT (file output),
   and the reject parts into the rejects file.

Workers must see INPUT and OUTPUT's directory at the same paths as the client (a shared
file system); see ``service/BATCH_README_SECTION.md``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
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
from model.predictor import AdvisorModel
from model.schema import OPEN_ORDER_COLUMNS
from service.batch import (
    REJECTS_SCHEMA,
    SCORED_SCHEMA,
    BatchJob,
    BatchSummary,
    SeenIds,
    order_id_hashes,
    partition_counts,
    progress_bar,
    score_partition,
    terminate_as_interrupt,
)
from service.batch_io import (
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


def load_piece(piece: Piece) -> pd.DataFrame:
    """The raw partition of one piece (same rows and lines as the local engine's chunks)."""
    if isinstance(piece, ParquetPiece):
        return read_parquet_piece(piece)
    chunk = split_chunk_bytes(_read_range(piece), piece.first_line, piece.offset)
    return parse_csv_chunk(chunk, piece.header)


def _raw_meta(columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame[LINE_COLUMN] = pd.Series(dtype=np.int64)
    frame[PROBLEM_COLUMN] = pd.Series(dtype=object)
    return frame


# -- worker-side functions (module level: pickled by reference) ------------------------
def partition_ids(raw: pd.DataFrame) -> pd.DataFrame:
    """Pass 1: hash and line of every order_id present in a parsed row, in row order."""
    hashes, present = order_id_hashes(raw["order_id"])
    present = present & raw[PROBLEM_COLUMN].isna().to_numpy(dtype=bool)
    return pd.DataFrame(
        {
            "position": np.flatnonzero(present).astype(np.int64),
            "hash": hashes[present],
            "line": raw[LINE_COLUMN].to_numpy(dtype=np.int64)[present],
        }
    )


_IDS_META = pd.DataFrame(
    {
        "position": pd.Series(dtype=np.int64),
        "hash": pd.Series(dtype=np.uint64),
        "line": pd.Series(dtype=np.int64),
    }
)
_COUNTS_META = pd.DataFrame(
    {"partition": pd.Series(dtype=np.int64), "counts": pd.Series(dtype=object)}
)


def score_and_write(
    raw: pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: Any,
    earlier: dict[int, tuple[np.ndarray, np.ndarray]],
    scored_dir: str,
    rejects_dir: str,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Pass 2: score one partition with :func:`score_partition`, write its two part files,
    return its counts (one row)."""
    number = int(partition_info["number"]) if partition_info else 0
    first = np.full(len(raw), -1, dtype=np.int64)
    if number in earlier:
        positions, lines = earlier[number]
        first[positions] = lines
    result = score_partition(raw, model, policy, as_of, first)
    name = f"part.{number:05d}.parquet"
    pq.write_table(
        pa.Table.from_pandas(result.scored, schema=SCORED_SCHEMA, preserve_index=False),
        os.path.join(scored_dir, name),
    )
    pq.write_table(
        pa.Table.from_pandas(result.rejects, schema=REJECTS_SCHEMA, preserve_index=False),
        os.path.join(rejects_dir, name),
    )
    return pd.DataFrame({"partition": [number], "counts": [partition_counts(result)]})


# -- client side ---------------------------------------------------------------------------
@contextmanager
def cluster_client(scheduler: str | None, n_workers: int | None = None) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler``, or of a new local cluster on 127.0.0.1."""
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as exc:
            raise AdvisorError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        with client:
            yield client
        return
    workers = n_workers or max(1, min(os.cpu_count() or 1, 8))
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _earlier_by_partition(
    id_frames: list[pd.DataFrame],
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per partition: positions and first lines of rows whose id an earlier partition holds."""
    seen = SeenIds()
    earlier: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for number, ids in enumerate(id_frames):
        hashes = ids["hash"].to_numpy(dtype=np.uint64)
        lines = ids["line"].to_numpy(dtype=np.int64)
        first = seen.first_lines(hashes)
        hit = first >= 0
        if hit.any():
            earlier[number] = (ids["position"].to_numpy(dtype=np.int64)[hit], first[hit])
        seen.add(hashes[~hit], lines[~hit])
    return earlier


def _concatenate(parts_dir: Path, count: int, sink: TableSink) -> None:
    for number in range(count):
        sink.write_table(pq.read_table(parts_dir / f"part.{number:05d}.parquet"))


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


def _score_on_cluster(
    job: BatchJob,
    pieces: list[Piece],
    columns: list[str],
    client: Any,
    scored_dir: Path,
    rejects_dir: Path,
    on_progress: Any,
) -> dict[int, dict[str, Any]]:
    """Both passes on the cluster; returns the counts of each partition by number."""
    import dask.dataframe as dd
    from distributed import as_completed

    raw = dd.from_map(load_piece, pieces, meta=_raw_meta(columns), enforce_metadata=False)
    id_futures = client.compute(raw.map_partitions(partition_ids, meta=_IDS_META).to_delayed())
    for _ in as_completed(id_futures):
        on_progress(0)
    earlier = _earlier_by_partition(client.gather(id_futures))
    model = client.scatter(job.model, broadcast=True, hash=False)
    counted = raw.map_partitions(
        score_and_write,
        model,
        job.policy,
        job.as_of,
        earlier,
        str(scored_dir),
        str(rejects_dir),
        meta=_COUNTS_META,
        enforce_metadata=False,
    )
    done: dict[int, dict[str, Any]] = {}
    for future in as_completed(client.compute(counted.to_delayed())):
        row = future.result()
        counts = row["counts"].iloc[0]
        done[int(row["partition"].iloc[0])] = counts
        on_progress(counts["scored"] + counts["rejected"])
    return done


def _empty_parts(scored_dir: Path, rejects_dir: Path) -> dict[int, dict[str, Any]]:
    """A header without rows: one empty part of each kind, no cluster needed."""
    pq.write_table(SCORED_SCHEMA.empty_table(), scored_dir / "part.00000.parquet")
    pq.write_table(REJECTS_SCHEMA.empty_table(), rejects_dir / "part.00000.parquet")
    return {
        0: {
            "scored": 0,
            "rejected": 0,
            "blank_lines": 0,
            "by_action": Counter(),
            "by_destination": Counter(),
            "rejects_by_column": Counter(),
        }
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
    job.output.parent.mkdir(parents=True, exist_ok=True)
    scored_dir = temp_path_for(job.output, "parts")
    rejects_dir = temp_path_for(job.output, "rejects-parts")
    sinks: list[TableSink] = []
    with terminate_as_interrupt(), progress_bar(console) as progress:
        task = progress.add_task("score", total=2 * len(pieces) or None, rows=0, rate=0.0)
        rows_done = 0

        def on_progress(rows: int) -> None:
            nonlocal rows_done
            rows_done += rows
            rate = rows_done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, advance=1, rows=rows_done, rate=rate)

        try:
            scored_dir.mkdir()
            rejects_dir.mkdir()
            if pieces:
                with cluster_client(scheduler, n_workers) as client:
                    summary.workers = len(client.scheduler_info()["workers"])
                    done = _score_on_cluster(
                        job, pieces, columns, client, scored_dir, rejects_dir, on_progress
                    )
            else:
                done = _empty_parts(scored_dir, rejects_dir)
            for number in sorted(done):
                summary.add_counts(**done[number])
            rejects_sink = TableSink(job.rejects, REJECTS_SCHEMA)
            sinks.append(rejects_sink)
            _concatenate(rejects_dir, len(done), rejects_sink)
            if out_kind != "parquet-dir":
                sink = TableSink(job.output, SCORED_SCHEMA, free_text=("order_id",))
                sinks.append(sink)
                _concatenate(scored_dir, len(done), sink)
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
    return summary
