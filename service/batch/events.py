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

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
    BLANK,
    LINE_COLUMN,
    PROBLEM_COLUMN,
    CsvSplitter,
    csv_header,
    input_kind,
    iter_parquet,
    parquet_columns,
    parse_csv_chunk,
)

__all__ = ["EVENT_CHUNK_ROWS", "BatchScans", "default_events_rejects_path", "read_batch_scans"]

EVENT_CHUNK_ROWS = 200_000
UNPARSABLE = "(unparsable)"  # as for the orders: the ``column`` of a record that is not CSV


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
    kind = input_kind(path, allow_directory=False)
    if kind == "parquet":
        parquet_columns(path, EVENT_COLUMNS)
        return (raw for raw, _ in iter_parquet(path, chunk_rows, EVENT_COLUMNS))
    header = csv_header(path, kind, EVENT_COLUMNS)
    return (parse_csv_chunk(chunk, header) for chunk in CsvSplitter(path, kind, header, chunk_rows))


def read_batch_scans(path: Path, chunk_rows: int = EVENT_CHUNK_ROWS) -> BatchScans:
    """Read, validate and pack the scans of ``path``; every row is a scan, a duplicate or a
    reject (see the module docstring)."""
    parts: list[ValidatedEvents] = []
    unparsable: list[pd.DataFrame] = []
    rows = 0
    for raw in _raw_chunks(path, chunk_rows):
        problem = raw.column(PROBLEM_COLUMN)
        noted = problem.is_valid().to_numpy(zero_copy_only=False)
        blank = noted & pc.fill_null(pc.equal(problem, BLANK), False).to_numpy(zero_copy_only=False)
        bad = noted & ~blank
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
        good = ~noted
        rows += int((~blank).sum())
        events = raw.drop_columns([LINE_COLUMN, PROBLEM_COLUMN])
        if not good.all():
            events = events.filter(pa.array(good))
        parts.append(validate_events(events, lines=lines[good], drop_duplicates=False))
    validated = concat_events(parts).without_duplicates()
    rejects = pd.concat([validated.rejects, *unparsable], ignore_index=True)
    return BatchScans(
        path=path,
        table=validated.scan_table(),
        rejects=rejects.sort_values("line", kind="stable").reset_index(drop=True),
        rows=rows,
        duplicates=validated.duplicates,
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
