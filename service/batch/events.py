"""``score --events``: the open orders' carrier scans, read once, taken chunk by chunk.

The events file (CSV, CSV.gz or Parquet) is read with the same chunked readers as the
orders (exact input lines, unparsable records reported), each chunk validated by
:func:`model.events.validate_events`, and the whole packed into one
:class:`model.events.ScanTable` (exact duplicates counted once across the file). While the
orders are scored, each chunk of orders takes its own scans from that table
(:func:`model.events.scans_of_orders`), so a scan dated before its order's ``shipped_at`` is
rejected when its order is seen, and scans of orders that are never scored are counted at
the end. The scan rejects (malformed rows and early scans) are written, sorted by line, to
the events rejects file; both engines produce the same file.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from model.events import (
    EVENT_COLUMNS,
    OrderScans,
    ScanTable,
    ValidatedEvents,
    concat_events,
    validate_events,
)
from model.schema import REJECT_COLUMNS
from service.batch.files import (
    LINE_COLUMN,
    PROBLEM_COLUMN,
    UNPARSABLE,
    CsvSplitter,
    csv_header,
    input_kind,
    iter_parquet,
    parquet_columns,
    parse_csv_chunk,
    problem_masks,
)

__all__ = ["EVENT_CHUNK_ROWS", "BatchScans", "default_events_rejects_path", "read_batch_scans"]

EVENT_CHUNK_ROWS = 200_000


@dataclass(frozen=True)
class BatchScans:
    """The events file of a run: its usable scans and what was left out on reading."""

    path: Path
    table: ScanTable
    rejects: pd.DataFrame  # REJECT_COLUMNS, lines of the events file
    rows: int  # data rows read (blank lines are not rows)
    duplicates: int

    @property
    def scans(self) -> int:
        return self.table.n_scans


def default_events_rejects_path(output: Path) -> Path:
    """``out.csv`` / ``out.parquet`` / ``out/`` -> ``out.events-rejects.csv``."""
    from service.batch.files import default_rejects_path

    rejects = default_rejects_path(output)
    return rejects.with_name(rejects.name.removesuffix(".rejects.csv") + ".events-rejects.csv")


def _raw_chunks(path: Path, chunk_rows: int) -> Iterator[pa.Table]:
    """The exact chunked reader (the orders' own): raw partitions with lines and problems."""
    kind = input_kind(path, allow_directory=False)
    if kind == "parquet":
        parquet_columns(path, EVENT_COLUMNS)
        return (raw for raw, _ in iter_parquet(path, chunk_rows, EVENT_COLUMNS))
    header = csv_header(path, kind, EVENT_COLUMNS)
    return (parse_csv_chunk(chunk, header) for chunk in CsvSplitter(path, kind, header, chunk_rows))


class _NotSimple(Exception):
    """The fast CSV path cannot vouch for the line numbers: read with the exact path."""


def _simple_csv(path: Path, kind: str) -> Iterator[pa.Table]:
    """Raw partitions of a CSV file in which every record is one line (no blank lines, no
    line break inside a field, every record well-formed, every byte UTF-8): Arrow's
    streaming reader, and line = row number + 1. Raises :class:`_NotSimple` (possibly after
    some chunks) when the file is not like that."""
    header = csv_header(path, kind, EVENT_COLUMNS)
    opener = gzip.open if kind == "csv.gz" else open
    newlines, ends_with_newline, size = 0, True, 0
    with opener(path, "rb") as handle:
        for block in iter(lambda: handle.read(16 << 20), b""):
            newlines += block.count(b"\n")
            ends_with_newline = block.endswith(b"\n")
            size += len(block)
    lines = newlines + (0 if ends_with_newline else 1)  # header included
    names = [n if n in EVENT_COLUMNS else f"__ignored_{i}" for i, n in enumerate(header.names)]
    try:
        reader = pacsv.open_csv(
            str(path),  # .gz is decompressed by Arrow from the suffix
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=8 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},  # every field checked as UTF-8
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowException as exc:
        raise _NotSimple(str(exc)) from None
    rows = 0
    known = header.known
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except pa.ArrowException as exc:
            raise _NotSimple(str(exc)) from None
        table = pa.Table.from_batches([batch]).select(known)
        first = rows + 2
        rows += batch.num_rows
        table = table.append_column(
            LINE_COLUMN, pa.array(np.arange(first, first + batch.num_rows), type=pa.int64())
        )
        yield table.append_column(PROBLEM_COLUMN, pa.nulls(batch.num_rows, type=pa.string()))
    if rows + 1 != lines:  # a blank line, or a record over several lines
        raise _NotSimple(f"{rows} records on {lines - 1} lines")


def read_batch_scans(path: Path, chunk_rows: int = EVENT_CHUNK_ROWS) -> BatchScans:
    """Read, validate and pack the scans of ``path``; every row is a scan, a duplicate or a
    reject (see the module docstring). A CSV file in which every record is one line goes
    through Arrow's streaming reader; any other through the exact chunked reader."""
    kind = input_kind(path, allow_directory=False)
    if kind in ("csv", "csv.gz"):
        try:
            return _read(path, _simple_csv(path, kind))
        except _NotSimple:
            pass
    return _read(path, _raw_chunks(path, chunk_rows))


def _read(path: Path, chunks: Iterator[pa.Table]) -> BatchScans:
    parts: list[ValidatedEvents] = []
    unparsable: list[pd.DataFrame] = []
    rows = 0
    for raw in chunks:
        problem = raw.column(PROBLEM_COLUMN)
        blank, bad = problem_masks(raw)
        lines = raw.column(LINE_COLUMN).to_numpy()
        if bad.any():
            rows_bad = pa.array(np.flatnonzero(bad))
            unparsable.append(
                pd.DataFrame(
                    {
                        "line": lines[bad],
                        "order_id": raw.column("order_id").take(rows_bad).to_pylist()
                        if "order_id" in raw.column_names
                        else None,
                        "column": UNPARSABLE,
                        "reason": problem.take(rows_bad).to_pylist(),
                    },
                    columns=list(REJECT_COLUMNS),
                )
            )
        good = ~blank & ~bad
        rows += int((~blank).sum())
        events = raw.drop_columns([LINE_COLUMN, PROBLEM_COLUMN])
        if not good.all():
            events = events.filter(pa.array(good))
        validated = validate_events(events, lines=lines[good], drop_duplicates=False)
        parts.append(validated.compact())  # the free text only as a hash, for duplicates
        pa.default_memory_pool().release_unused()  # the chunk's text: give it back now
    validated = concat_events(parts)
    table, duplicates = validated.packed()
    rejects = pd.concat([validated.rejects, *unparsable], ignore_index=True)
    return BatchScans(
        path=path,
        table=table,
        rejects=rejects.sort_values("line", kind="stable")
        .reset_index(drop=True)
        .astype({"line": np.int64, "order_id": object, "column": object, "reason": object}),
        rows=rows,
        duplicates=validated.duplicates + duplicates,
    )


def early_rejects(taken: OrderScans) -> pd.DataFrame:
    """The scans of a chunk's orders dated before their shipment, as rejects rows."""
    return pd.DataFrame(
        {
            "line": taken.early_line,
            "order_id": taken.early_order_id,
            "column": "event_at",
            "reason": taken.early_reason,
        },
        columns=list(REJECT_COLUMNS),
    )
