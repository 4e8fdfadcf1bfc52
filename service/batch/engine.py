"""Batch scoring of open-order files in bounded memory, every input row accounted for.

Each chunk of the input goes through one step, parse -> validate -> score -> write:

- parse (:mod:`service.batch.files`): a *raw partition*, an Arrow table of the known
  columns with each row's input line and, for a line that is not a CSV record, the reason;
- validate (:func:`validate_partition`): unparsable rows and order_ids already seen in an
  earlier chunk (:class:`SeenIds`) are rejected, the rest checked by
  :func:`model.schema.validate_open_orders_table`, giving a :class:`CheckedPartition`: the
  valid orders as columns and every rejected row (line, order_id, column, reason);
- score: :func:`service.scoring.score`, the one scoring function, on
  ``CheckedPartition.valid`` (columns of the orders as validated; a per-order column
  joined there reaches the scoring function with the orders);
- write (:func:`partition_result`, :class:`BackgroundWriter`): the scores as a table of
  :data:`SCORED_SCHEMA` appended to a hidden temporary beside OUTPUT, the rejects beside the
  rejects file; both renamed into place only when the whole input is done.

:func:`run_local` runs the steps in three threads (parse and validate; score; write), chunk
after chunk, in order; :func:`score_partition` runs validate and score on one partition (the
Dask engine, :mod:`service.batch.dask_engine`, calls it on the same raw partitions), so both
engines give the same rows with the same values. Each input row is either scored or
rejected; ``scored + rejected = input rows``.

An order_id already seen in an earlier chunk is rejected as a duplicate like one seen earlier
in the same chunk; :class:`SeenIds` remembers a 64-bit hash and the first line of every
order_id (13 to 14 bytes per distinct id, with its filter), so results do not depend on the
chunk size.
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
import pyarrow.compute as pc
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
from model.events import MILESTONES, OrderScans, ScanTable, scans_of_orders
from model.features import column
from model.predictor import AdvisorModel
from model.schema import (
    OPEN_ORDER_COLUMNS,
    ValidatedColumns,
    strip_text,
    validate_open_orders_table,
)
from service.batch.events import (
    BatchScans,
    default_events_rejects_path,
    early_rejects,
    read_batch_scans,
)
from service.batch.files import (
    LINE_COLUMN,
    PROBLEM_COLUMN,
    UNPARSABLE,
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
    problem_masks,
)
from service.policy import ACTIONS, PolicyConfig
from service.scoring import SCORED_COLUMNS, Scores, score

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "REJECTS_SCHEMA",
    "SCORED_SCHEMA",
    "BatchJob",
    "BatchSummary",
    "CheckedPartition",
    "PartitionResult",
    "ScanCounts",
    "SeenIds",
    "Terminated",
    "order_id_hashes",
    "order_id_text",
    "partition_result",
    "print_summary",
    "run_local",
    "score_checked",
    "score_partition",
    "scored_table",
    "terminate_as_interrupt",
    "validate_partition",
    "validated_chunks",
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


# -- duplicates across chunks ------------------------------------------------------------
def order_id_text(values: pd.Series | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each order_id as stripped text (an Arrow string array), null where there is none.

    Ids stored as numbers (Parquet) are read as pandas prints them, as validation does."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not (isinstance(values, pa.Array) and pa.types.is_string(values.type)):
        if isinstance(values, pa.Array) and pa.types.is_large_string(values.type):
            values = values.cast(pa.string())
        else:
            series = values.to_pandas() if isinstance(values, pa.Array) else values
            text = series.astype("string").to_numpy(dtype=object, na_value=None)
            values = pa.array(text, type=pa.string())
    stripped = strip_text(values)
    empty = pc.equal(pc.binary_length(stripped), 0)
    if not pc.any(empty).as_py():
        return stripped
    return pc.if_else(empty, pa.scalar(None, pa.string()), stripped)


def order_id_hashes(
    order_id: pd.Series | pa.Array | pa.ChunkedArray,
) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hash of each stripped order_id (stable across processes) and where one exists."""
    text = order_id_text(order_id)
    present = text.is_valid().to_numpy(zero_copy_only=False)
    # As UTF-8 bytes objects: pandas hashes those as they are (the same hash as of the
    # text, which it would encode first).
    values = pc.fill_null(text, "").cast(pa.binary()).to_numpy(zero_copy_only=False)
    return pd.util.hash_array(values, categorize=False), present


@dataclass(frozen=True)
class _Run:
    """Sorted, distinct hashes with their first lines, and a Bloom filter (8 to 16 bits per
    hash, two probes from disjoint bit ranges of the hash) that rules out 95-98.6% of absent
    hashes before any binary search."""

    hashes: np.ndarray
    lines: np.ndarray
    bitmap: np.ndarray  # packed bits, little-endian within each byte
    width: np.uint64  # bits per probe

    @classmethod
    def of(cls, hashes: np.ndarray, lines: np.ndarray) -> _Run:
        bits = max(1 << 16, 1 << (_FILTER_BITS_PER_ID * len(hashes)).bit_length())
        width = np.uint64(min(bits.bit_length() - 1, 32))
        present = np.zeros(1 << int(width), dtype=bool)
        for probe in _probes(hashes, width):
            present[probe] = True
        return cls(hashes, lines, np.packbits(present, bitorder="little"), width)

    def may_hold(self, hashes: np.ndarray) -> np.ndarray:
        first, second = _probes(hashes, self.width)
        return self._bit(first) & self._bit(second)

    def _bit(self, probe: np.ndarray) -> np.ndarray:
        return ((self.bitmap[probe >> 3] >> (probe & 7)) & 1).astype(bool)


_FILTER_BITS_PER_ID = 8  # at least; rounded up to a power of two


def _probes(hashes: np.ndarray, width: np.uint64) -> tuple[np.ndarray, np.ndarray]:
    """The top ``width`` bits of each hash, and the ``width`` bits below them."""
    shift = np.uint64(64) - width
    return (hashes >> shift).astype(np.intp), ((hashes << width) >> shift).astype(np.intp)


class SeenIds:
    """The first line of every order_id hash seen so far, as sorted runs merged as they grow
    (like a log-structured merge tree), capped so no merge copies more than ``RUN_CAP`` ids;
    each run's Bloom filter spares most binary searches (12 bytes per id, plus 1 to 2)."""

    RUN_CAP = 1 << 20

    def __init__(self) -> None:
        self._runs: list[_Run] = []

    def __len__(self) -> int:
        return sum(len(run.hashes) for run in self._runs)

    def first_lines(self, hashes: np.ndarray) -> np.ndarray:
        """First line recorded for each hash, or -1 where it was never seen."""
        order = np.argsort(hashes, kind="stable")
        out = np.empty(len(hashes), dtype=np.int64)
        out[order] = self._first_lines_sorted(hashes[order])
        return out

    def _first_lines_sorted(self, hashes: np.ndarray) -> np.ndarray:
        out = np.full(len(hashes), -1, dtype=np.int64)
        for run in self._runs:
            maybe = np.flatnonzero(run.may_hold(hashes))
            needles = hashes[maybe]  # sorted: each binary search starts where the last ended
            at = np.minimum(np.searchsorted(run.hashes, needles), len(run.hashes) - 1)
            hit = run.hashes[at] == needles
            out[maybe[hit]] = run.lines[at[hit]]
        return out

    def add(self, hashes: np.ndarray, lines: np.ndarray) -> None:
        """Record hashes not seen before (the first occurrence's line wins)."""
        if len(hashes) == 0:
            return
        unique, first = np.unique(hashes, return_index=True)
        self._add_sorted(unique, np.asarray(lines, dtype=np.int64)[first])

    def _add_sorted(self, unique: np.ndarray, lines: np.ndarray) -> None:
        """Record new hashes, sorted and distinct, with their lines."""
        if len(unique) == 0:
            return
        compact = np.uint32 if int(lines.max()) < 2**32 else np.int64  # 12 bytes per id
        hashes, lines = unique, lines.astype(compact)
        while self._runs:
            last = self._runs[-1]
            if len(last.hashes) > 2 * len(hashes) or len(last.hashes) + len(hashes) > self.RUN_CAP:
                break
            hashes, lines = _merge_sorted(last.hashes, last.lines, hashes, lines)
            self._runs.pop()
        self._runs.append(_Run.of(hashes, lines))

    def earlier(self, raw: pa.Table) -> np.ndarray:
        """For each row of a raw partition: the line of an earlier chunk holding its order_id,
        or -1; then remember this partition's ids."""
        return self.scan(raw)[0]

    def scan(self, raw: pa.Table) -> tuple[np.ndarray, bool]:
        """:meth:`earlier`, and whether the partition's parsed rows hold distinct order_ids
        (no two equal hashes: then no two equal ids). Sorted once for every step."""
        hashes, present = order_id_hashes(raw.column("order_id"))
        present &= raw.column(PROBLEM_COLUMN).is_null().to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(present)
        rows, sorted_hashes = _sorted_by_hash(rows, hashes[rows])
        found = self._first_lines_sorted(sorted_hashes)
        out = np.full(raw.num_rows, -1, dtype=np.int64)
        out[rows] = found
        first = np.ones(len(rows), dtype=bool)
        first[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        new = first & (found < 0)
        self._add_sorted(sorted_hashes[new], raw.column(LINE_COLUMN).to_numpy()[rows[new]])
        return out, bool(first.all())


def _sorted_by_hash(rows: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` and their ``hashes`` ordered by hash, equal hashes earliest row first. NumPy's
    unstable sort is ~30% faster; a tie (a duplicate in the chunk: rare) sorts again stably."""
    order = np.argsort(hashes, kind="quicksort")
    ordered = hashes[order]
    if len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any():
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
    return rows[order], ordered


def _merge_sorted(
    h1: np.ndarray, l1: np.ndarray, h2: np.ndarray, l2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Merge two sorted runs (disjoint hashes): NumPy's stable sort is a timsort, which
    finds the two runs and merges them in one linear pass (2-3x faster than placing one
    run into the other by binary search)."""
    hashes = np.concatenate([h1, h2])
    order = np.argsort(hashes, kind="stable")
    lines = np.concatenate([l1, l2.astype(np.result_type(l1, l2), copy=False)])
    return hashes[order], lines[order]


# -- one partition: validate, score, build the output -------------------------------------
@dataclass(frozen=True)
class PartitionResult:
    """Scored rows (input order) and rejects (by line), as Arrow tables of
    :data:`SCORED_SCHEMA` and :data:`REJECTS_SCHEMA`, and the destination of each scored row."""

    scored: pa.Table
    rejects: pa.Table
    destinations: pa.Array
    blank_lines: int = 0
    scans: OrderScans | None = None  # the partition's scans, with --events


@dataclass(frozen=True)
class CheckedPartition:
    """A raw partition after validation: the valid orders as the columns
    :func:`service.scoring.score` takes (see
    :class:`model.schema.ValidatedColumns`), every rejected row (unparsable, duplicate of an
    earlier partition, invalid) by line, and the blank lines skipped."""

    valid: dict[str, Any]
    rejects: pa.Table
    blank_lines: int

    @property
    def input_rows(self) -> int:
        return len(self.valid["line"]) + self.rejects.num_rows


def _as_table(raw: pa.Table | pd.DataFrame) -> pa.Table:
    if isinstance(raw, pd.DataFrame):  # a Dask partition
        return pa.Table.from_pandas(raw, preserve_index=False)
    return raw


def validate_partition(
    raw: pa.Table | pd.DataFrame,
    as_of: date,
    earlier: np.ndarray | None = None,
    *,
    ids_distinct: bool = False,
) -> CheckedPartition:
    """Reject the unparsable rows and the ``earlier`` duplicates (first line of an order_id
    seen in an earlier partition, -1 otherwise) of one raw partition, then validate the
    rest (:func:`model.schema.validate_open_orders_table`; ``ids_distinct``: no two parsed
    rows of the partition share an order_id, as :meth:`SeenIds.scan` finds)."""
    raw = _as_table(raw)
    lines = raw.column(LINE_COLUMN).to_numpy()
    problem_text = raw.column(PROBLEM_COLUMN)
    blank, problem = problem_masks(raw)
    duplicate = np.zeros(len(raw), dtype=bool) if earlier is None else earlier >= 0
    parts: list[pa.Table] = []
    if problem.any():
        rows = np.flatnonzero(problem)
        parts.append(
            _rejects(
                lines[rows],
                order_id_text(raw.column("order_id").take(rows)),
                UNPARSABLE,
                problem_text.take(rows),
            )
        )
    if duplicate.any():
        assert earlier is not None
        rows = np.flatnonzero(duplicate)
        reasons = [f"duplicate order_id (first seen on line {n})" for n in earlier[rows]]
        parts.append(
            _rejects(
                lines[rows], order_id_text(raw.column("order_id").take(rows)), "order_id", reasons
            )
        )
    keep = ~problem & ~duplicate & ~blank
    known = [c for c in raw.column_names if c in OPEN_ORDER_COLUMNS]
    rest = raw.select(known)
    if not keep.all():
        rest = rest.filter(pa.array(keep))
    checked: ValidatedColumns = validate_open_orders_table(
        rest, as_of=as_of, lines=lines[keep], ids_distinct=ids_distinct
    )
    parts.append(checked.rejects)
    rejects = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        rejects = rejects.take(np.argsort(rejects.column("line").to_numpy(), kind="stable"))
    return CheckedPartition(checked.valid, rejects, int(blank.sum()))


def _rejects(lines: np.ndarray, order_id: pa.Array, column: str, reason: Any) -> pa.Table:
    return pa.table(
        {
            "line": pa.array(lines, type=pa.int64()),
            "order_id": order_id,
            "column": pa.array([column] * len(lines), type=pa.string()),
            "reason": reason
            if isinstance(reason, pa.Array | pa.ChunkedArray)
            else pa.array(reason, type=pa.string()),
        },
        schema=REJECTS_SCHEMA,
    )


def scored_table(scores: Scores) -> pa.Table:
    """:func:`service.scoring.score`'s recommendations as a table of :data:`SCORED_SCHEMA`;
    the text columns are taken from their codes by Arrow, never made Python strings."""
    n = len(scores)
    milestones = scores.last_milestone
    order_id = scores.order_id
    if not isinstance(order_id, pa.Array | pa.ChunkedArray):
        order_id = pa.array(order_id, type=pa.string(), from_pandas=True)
    text = {
        "order_id": order_id,
        "action": _ACTION_TEXT.take(pa.array(scores.decisions.action_code)),
        "reasons": pa.array(scores.decisions.reason_texts, type=pa.string()).take(
            pa.array(scores.decisions.reason_code)
        ),
        "model_version": pa.repeat(pa.scalar(scores.model_version, pa.string()), n),
        "last_milestone": _MILESTONE_TEXT.take(pa.array(milestones, mask=milestones < 0)),
    }
    return pa.table(
        [
            text[f.name]
            if f.name in text
            else pa.array(scores.numbers[f.name], type=f.type, from_pandas=True)
            for f in SCORED_SCHEMA
        ],
        schema=SCORED_SCHEMA,
    )


_ACTION_TEXT = pa.array(ACTIONS, type=pa.string())
_MILESTONE_TEXT = pa.array(MILESTONES, type=pa.string())


def score_partition(
    raw: pa.Table | pd.DataFrame,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    earlier: np.ndarray | None = None,
    scans: ScanTable | None = None,
) -> PartitionResult:
    """Score one raw partition: validate (:func:`validate_partition`), then score the valid
    orders (:func:`score_checked`); every row ends up in one of the two."""
    checked = validate_partition(raw, as_of, earlier)
    scored, taken = score_checked(checked, model, policy, as_of, scans)
    return partition_result(checked, scored, taken)


def score_checked(
    checked: CheckedPartition,
    model: AdvisorModel,
    policy: PolicyConfig,
    as_of: date,
    scans: ScanTable | None = None,
) -> tuple[Scores, OrderScans | None]:
    """:func:`service.scoring.score` on the partition's valid orders, with their own
    scans taken from ``scans`` (the events file's table) when given."""
    if scans is None:
        return score(checked.valid, model, policy, as_of), None
    taken = scans_of_orders(scans, column(checked.valid, "order_id"), checked.valid["shipped_at"])
    rows = np.arange(taken.table.n_orders, dtype=np.int64)
    scored = score(checked.valid, model, policy, as_of, scans=taken.table, scan_rows=rows)
    return scored, taken


def partition_result(
    checked: CheckedPartition, scored: Scores, scans: OrderScans | None = None
) -> PartitionResult:
    """The output of one partition: its scores as a table, its rejects, its destinations."""
    return PartitionResult(
        scored=scored_table(scored),
        rejects=checked.rejects,
        destinations=checked.valid["destination_country"],
        blank_lines=checked.blank_lines,
        scans=scans,
    )


def partition_counts(result: PartitionResult) -> dict[str, Any]:
    """The counts of one partition that a :class:`BatchSummary` adds up (small, picklable)."""
    by_destination: Counter[tuple[str, str]] = Counter()
    if result.scored.num_rows:
        destination = pc.dictionary_encode(result.destinations)
        action = pc.dictionary_encode(result.scored.column("action").combine_chunks())
        width = len(action.dictionary)
        pair = destination.indices.to_numpy() * width + action.indices.to_numpy()
        counts = np.bincount(pair, minlength=len(destination.dictionary) * width)
        names = destination.dictionary.to_pylist(), action.dictionary.to_pylist()
        for code in np.flatnonzero(counts).tolist():
            key = (str(names[0][code // width]), str(names[1][code % width]))
            by_destination[key] = int(counts[code])
    by_action: Counter[str] = Counter()
    for (_, action_name), n in by_destination.items():
        by_action[action_name] += n
    taken = result.scans
    return {
        "scored": result.scored.num_rows,
        "rejected": result.rejects.num_rows,
        "blank_lines": result.blank_lines,
        "by_action": by_action,
        "by_destination": by_destination,
        "rejects_by_column": Counter(result.rejects.column("column").to_pylist()),
        "scan_orders": taken.orders if taken is not None else 0,
        "scans_taken": taken.scans if taken is not None else 0,
        "early_scans": early_rejects(taken)
        if taken is not None and len(taken.early_line)
        else None,
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
    events: Path | None = None  # the open orders' carrier scans
    events_rejects: Path | None = None  # their rejects (set when ``events`` is)

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
        events: Path | None = None,
        events_rejects: Path | None = None,
    ) -> BatchJob:
        rejects = rejects if rejects is not None else default_rejects_path(output)
        if rejects.resolve() == output.resolve():
            raise InputFileError(f"{rejects}: the rejects file cannot be OUTPUT itself")
        outputs = [output.resolve(), rejects.resolve()]
        if events is not None:
            if events_rejects is None:
                events_rejects = default_events_rejects_path(output)
            if events_rejects.resolve() in outputs:
                raise InputFileError(
                    f"{events_rejects}: the events rejects file cannot also be OUTPUT or the"
                    " rejects file"
                )
            outputs.append(events_rejects.resolve())
            if events.resolve() in outputs:
                raise InputFileError(f"{events}: EVENTS cannot also be an output of the run")
        elif events_rejects is not None:
            raise InputFileError("--events-rejects needs --events")
        if input_path.resolve() in outputs:
            raise InputFileError(f"{input_path}: INPUT cannot also be an output of the run")
        return cls(
            input_path,
            output,
            rejects,
            model,
            policy,
            as_of,
            chunk_rows or DEFAULT_CHUNK_ROWS,
            events,
            events_rejects,
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
    scans: ScanCounts | None = None  # with --events

    def start_scans(self, scans: BatchScans, rejects_path: Path) -> None:
        self.scans = ScanCounts(scans, rejects_path)

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
        scan_orders: int = 0,
        scans_taken: int = 0,
        early_scans: pd.DataFrame | None = None,
    ) -> None:
        if self.scans is not None:
            self.scans.add(scan_orders, scans_taken, early_scans)
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


@dataclass
class ScanCounts:
    """What became of the events file's rows in a run (``score --events``)."""

    source: BatchScans
    rejects_path: Path
    orders_matched: int = 0  # scored orders that had scans
    scans_matched: int = 0  # their scans (early ones included)
    early: list[pd.DataFrame] = field(default_factory=list)

    def add(self, orders: int, scans: int, early: pd.DataFrame | None) -> None:
        self.orders_matched += orders
        self.scans_matched += scans
        if early is not None and len(early):
            self.early.append(early)

    @property
    def early_count(self) -> int:
        return sum(len(part) for part in self.early)

    @property
    def used(self) -> int:
        return self.scans_matched - self.early_count

    @property
    def rejected(self) -> int:
        return len(self.source.rejects) + self.early_count

    @property
    def unknown_orders(self) -> int:
        table = self.source.table
        return int((np.diff(table.offsets) > 0).sum()) - self.orders_matched

    @property
    def unknown_scans(self) -> int:
        return self.source.scans - self.scans_matched

    def rejects(self) -> pa.Table:
        """Every scan left out, sorted by line (:data:`REJECTS_SCHEMA`)."""
        frame = pd.concat([self.source.rejects, *self.early], ignore_index=True)
        frame = frame.sort_values("line", kind="stable").reset_index(drop=True)
        return pa.Table.from_pandas(frame, schema=REJECTS_SCHEMA, preserve_index=False)

    def write_rejects(self) -> None:
        sink = TableSink(self.rejects_path, REJECTS_SCHEMA)
        try:
            sink.write_table(self.rejects())
            sink.commit()
        except BaseException:
            sink.abort()
            raise

    def line(self) -> str:
        """One line for the console: every row of the events file accounted for."""
        source = self.source
        return (
            f"scans: {source.rows:,} rows in {source.path}: {self.used:,} used,"
            f" {self.rejected:,} rejected (listed in {self.rejects_path}),"
            f" {source.duplicates:,} exact duplicates counted once, {self.unknown_scans:,}"
            f" of {self.unknown_orders:,} orders not scored (absent from INPUT or rejected)"
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


RawChunks = Iterator[tuple[pa.Table, int]]  # (raw partition, progress so far)


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
    """Stream INPUT into OUTPUT and the rejects file, chunk by chunk: parse and validate
    (:func:`validated_chunks`, in a reader thread), score (:func:`score`, here),
    build the output table and write it (:class:`BackgroundWriter`, in a writer thread)."""
    output_kind(job.output, allow_directory=False)
    output_kind(job.rejects, allow_directory=False)
    started = time.perf_counter()
    chunks, total = raw_chunks(job.input, job.chunk_rows)
    summary = BatchSummary("local", job.input, job.output, job.rejects)
    scans = load_job_scans(job, summary)
    sinks: list[TableSink] = []
    writer: BackgroundWriter | None = None
    rows = 0
    with terminate_as_interrupt(), one_openmp_thread(), progress_bar(console) as progress:
        task = progress.add_task("score", total=total or None, rows=0, rate=0.0)
        try:
            scored_sink = TableSink(job.output, SCORED_SCHEMA, free_text=("order_id",))
            sinks.append(scored_sink)
            rejects_sink = TableSink(job.rejects, REJECTS_SCHEMA)
            sinks.append(rejects_sink)
            writer = BackgroundWriter(scored_sink, rejects_sink, summary)
            for checked, done in prefetch(validated_chunks(chunks, job.as_of)):
                scored, taken = score_checked(checked, job.model, job.policy, job.as_of, scans)
                writer.put(checked, scored, taken)
                rows += checked.input_rows
                elapsed = max(time.perf_counter() - started, 1e-9)
                progress.update(task, completed=done, rows=rows, rate=rows / elapsed)
            writer.close()
            if summary.scans is not None:
                summary.scans.write_rejects()
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


def load_job_scans(job: BatchJob, summary: BatchSummary) -> ScanTable | None:
    """Read the job's events file (if any) and note it in ``summary``."""
    if job.events is None:
        return None
    assert job.events_rejects is not None
    output_kind(job.events_rejects, allow_directory=False)
    scans = read_batch_scans(job.events)
    summary.start_scans(scans, job.events_rejects)
    return scans.table


def validated_chunks(chunks: RawChunks, as_of: date) -> Iterator[tuple[CheckedPartition, int]]:
    """Each raw partition, in order, checked against the order_ids of earlier ones and
    validated (:func:`validate_partition`), with the progress so far."""
    seen = SeenIds()
    for raw, done in chunks:
        earlier, distinct = seen.scan(raw)
        yield validate_partition(raw, as_of, earlier, ids_distinct=distinct), done


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """One OpenMP thread for the model while the run lasts, unless OMP_NUM_THREADS is set
    (:func:`model.hazard.openmp_threads`: it holds even though scikit-learn loads only when
    a lane needs new tables); a large batch of logit tables is still spread over the cores
    (:func:`model.hazard.table_threads`), when the reader and writer have little to do.

    Reading and writing already run in their own threads; OpenMP threads spinning beside
    them made a 1M-row run 1.7x slower on 2 cores (bench/RESULTS.md)."""
    if os.environ.get("OMP_NUM_THREADS"):
        yield
        return
    from model.hazard import openmp_threads, table_threads

    with openmp_threads(1), table_threads(os.cpu_count() or 1):
        yield


class BackgroundWriter:
    """Builds each chunk's output table from its scores (:func:`scored_table`), appends it and
    the chunk's rejects to their sinks and adds its counts to ``summary``, in a thread, in
    order, while the next chunk is scored; an error in the thread is raised by the next
    :meth:`put` or :meth:`close`."""

    def __init__(self, scored: TableSink, rejects: TableSink, summary: BatchSummary) -> None:
        import queue

        self._queue: queue.Queue[tuple[CheckedPartition, Scores, OrderScans | None] | None] = (
            queue.Queue(1)
        )
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._sinks = (scored, rejects)
        self._summary = summary
        self._thread = threading.Thread(target=self._run, name="batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            if item is None:
                return
            try:
                checked, scored, taken = item
                result = partition_result(checked, scored, taken)
                self._sinks[0].write_table(result.scored)
                self._sinks[1].write_table(result.rejects)
                self._summary.add(result)
            except BaseException as exc:  # handed to the caller
                self._error = exc
                return

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(
        self,
        checked: CheckedPartition,
        scored: Scores,
        taken: OrderScans | None = None,
    ) -> None:
        import queue

        while True:
            self._check()
            try:
                self._queue.put((checked, scored, taken), timeout=0.1)
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
    for name, n in sorted(summary.rejects_by_column.items(), key=lambda kv: -kv[1]):
        totals.add_row(f"  rejected on {name}", f"{n:,}")
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
    if summary.scans is not None:
        console.print(summary.scans.line(), highlight=False, soft_wrap=True)
    if summary.rejected and summary.rejects_path.is_file():
        first = head_rows(summary.rejects_path, top)
        rejects = Table(title=f"first {len(first)} of {summary.rejected:,} rejected rows")
        for column in REJECTS_SCHEMA.names:
            rejects.add_column(column)
        for row in first.itertuples(index=False):
            rejects.add_row(*(str(value) for value in row))
        console.print(rejects)
