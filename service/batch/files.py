"""Chunked reading with exact input line numbers, and atomic chunked writing.

CSV files are split into records by a vectorised scan of the raw bytes (line ends ``\\n``,
``\\r\\n`` or ``\\r``; quote parity decides whether a line end lies inside a quoted field),
so each record keeps the 1-based line on which it starts, whatever blank lines, BOM, Windows
line endings or quoted newlines come before it. Well-formed records are then parsed by
pyarrow in one call per chunk; records that do not parse (wrong field count, a quote that is
never closed, bytes that are not UTF-8) become *problem rows* that carry their line, their
order_id when it can be read, and a reason. Python's ``csv`` module is the reference for the
rare records the fast path cannot decide, so both paths agree on what a field is.

A chunk is a *raw partition*, an Arrow table: the known open-order columns (text from CSV;
as stored in Parquet), plus :data:`LINE_COLUMN` (input line; the 1-based row number for
Parquet) and :data:`PROBLEM_COLUMN` (the reason a row could not be parsed, :data:`BLANK`
for a blank line, else null), in input order.
The local engine and the Dask engine build chunks with the same functions, so they see the
same rows with the same line numbers.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from model.errors import InputFileError, SchemaError
from model.events import REQUIRED_EVENT_COLUMNS
from model.schema import OPEN_ORDER_COLUMNS, _require_columns, validate_open_orders

__all__ = [
    "BLANK",
    "LINE_COLUMN",
    "PARQUET_ROW_GROUP_ROWS",
    "PROBLEM_COLUMN",
    "UNPARSABLE",
    "CsvChunk",
    "CsvSplitter",
    "ParquetPiece",
    "TableSink",
    "csv_header",
    "default_rejects_path",
    "head_rows",
    "input_kind",
    "output_kind",
    "parquet_pieces",
    "parse_csv_chunk",
    "problem_masks",
    "read_parquet_piece",
    "temp_path_for",
]

LINE_COLUMN = "__line__"
PROBLEM_COLUMN = "__problem__"
BLANK = "(blank line)"  # PROBLEM_COLUMN of a blank line: skipped, counted, not a row
UNPARSABLE = "(unparsable)"  # the ``column`` of a rejected row that is not a CSV record
NOT_UTF8 = "line is not valid UTF-8 text"
MAX_RECORD_LINES = 100  # a quoted field spanning more lines is taken as an unclosed quote
MAX_LINE_BYTES = 64 << 20  # a "line" longer than this means the file is not a CSV
# Rows per row group of a Parquet output (the last may hold fewer): fixed, so the file's
# bytes do not depend on the chunk size or engine that produced the rows.
PARQUET_ROW_GROUP_ROWS = 50_000
_BOM = b"\xef\xbb\xbf"
_QUOTE, _COMMA, _LF, _CR = 34, 44, 10, 13
_SUFFIXES = (".csv.gz", ".csv", ".parquet")


# -- file kinds and names ------------------------------------------------------------------
def input_kind(path: Path, *, allow_directory: bool) -> str:
    """``csv``, ``csv.gz``, ``parquet`` or ``parquet-dir``; a missing or odd input is an error."""
    if allow_directory and path.is_dir():
        if not any(path.glob("*.parquet")):
            raise InputFileError(f"{path}: directory holds no .parquet files")
        return "parquet-dir"
    kind = _kind_from_name(path)
    if kind is None:
        raise InputFileError(
            f"{path}: unsupported file type (expected .csv, .csv.gz or .parquet"
            + (", or a directory of .parquet files)" if allow_directory else ")")
        )
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    return kind


def output_kind(path: Path, *, allow_directory: bool) -> str:
    """Like :func:`input_kind` for an output; a name without a table suffix is a directory
    of Parquet files (Dask engine only)."""
    kind = _kind_from_name(path)
    if kind is not None:
        return kind
    if allow_directory:
        return "parquet-dir"
    raise InputFileError(f"{path}: unsupported file type (expected .csv, .csv.gz or .parquet)")


def _kind_from_name(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return suffix.lstrip(".")
    return None


def default_rejects_path(output: Path) -> Path:
    """``out.csv`` / ``out.csv.gz`` / ``out.parquet`` / ``out/`` -> ``out.rejects.csv``."""
    name = output.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(f"{name}.rejects.csv")


def temp_path_for(path: Path, tag: str = "partial") -> Path:
    """The hidden temporary beside ``path`` that is renamed to it when complete."""
    return path.with_name(f".{path.name}.{os.getpid()}.{tag}")


# -- CSV: header -------------------------------------------------------------------------
def _open_binary(path: Path, kind: str) -> Any:
    if kind == "csv.gz":
        return gzip.open(path, "rb")
    return path.open("rb")


def _decode_fields(record: bytes) -> list[str] | None:
    """The fields of one CSV record by Python's ``csv`` rules, or None if it is not one."""
    try:
        rows = list(csv.reader(io.StringIO(record.decode("utf-8"), newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error):
        return None
    return rows[0] if len(rows) == 1 else None


@dataclass(frozen=True)
class CsvHeader:
    """The column names of a CSV file and where its data starts."""

    names: tuple[str, ...]
    data_offset: int  # byte offset of the first data line (after the BOM and header)
    data_line: int  # 1-based line number of the first data line
    columns: tuple[str, ...] = OPEN_ORDER_COLUMNS  # the columns read; others are ignored

    @property
    def known(self) -> list[str]:
        return [n for n in self.names if n in self.columns]


def csv_header(path: Path, kind: str, columns: tuple[str, ...] = OPEN_ORDER_COLUMNS) -> CsvHeader:
    """Read and check the header: UTF-8, no repeated known column, required columns present
    (``columns``: the open orders' by default, else :data:`model.events.EVENT_COLUMNS`)."""
    try:
        with _open_binary(path, kind) as handle:
            head = handle.read(1 << 20)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"{path}: cannot read as {kind}: {exc}") from None
    start = len(_BOM) if head.startswith(_BOM) else 0
    if not head[start:].strip():
        raise InputFileError(f"{path}: empty file (no header line)")
    ends = [i for i in (head.find(b"\n", start), head.find(b"\r", start)) if i >= 0]
    if not ends:
        raise InputFileError(f"{path}: no line end within the first 1 MiB: not a CSV file")
    end = min(ends)
    after = end + 2 if head[end : end + 2] == b"\r\n" else end + 1
    fields = _decode_fields(head[start:end])
    if fields is None:
        raise InputFileError(f"{path}: cannot read as csv: header line is not UTF-8 CSV text")
    names = tuple(f.strip() for f in fields)
    repeated = sorted({n for n in names if n in columns and names.count(n) > 1})
    if repeated:
        raise InputFileError(f"{path}: header repeats column(s): {', '.join(repeated)}")
    require_columns(list(names), path, columns)
    return CsvHeader(names=names, data_offset=after, data_line=2, columns=columns)


def require_columns(
    names: list[str], path: Path, columns: tuple[str, ...] = OPEN_ORDER_COLUMNS
) -> None:
    """Raise :class:`SchemaError` (naming the file) when a required column is missing."""
    try:
        if columns == OPEN_ORDER_COLUMNS:
            validate_open_orders(pd.DataFrame(columns=names))
        else:
            _require_columns(names, REQUIRED_EVENT_COLUMNS, "tracking events")
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None


# -- CSV: splitting bytes into records ---------------------------------------------------
@dataclass
class _Lines:
    """Line layout of a byte buffer: content [start, end) and where the next line starts."""

    start: np.ndarray
    end: np.ndarray
    next_start: np.ndarray
    parity_end: np.ndarray  # quote parity (from buffer start) after each line


def _line_layout(arr: np.ndarray, buf: bytes, eof: bool) -> _Lines:
    n = len(arr)
    term = np.flatnonzero(arr == _LF)
    content_end = term.copy()
    if b"\r" in buf:
        cr = np.flatnonzero(arr == _CR)
        following = arr[np.minimum(cr + 1, n - 1)]
        crlf = (cr + 1 < n) & (following == _LF)
        lone = cr[~crlf & ((cr + 1 < n) | eof)]  # a final \r may be half of a \r\n
        content_end[np.isin(term, cr[crlf] + 1)] -= 1
        term = np.concatenate([term, lone])
        content_end = np.concatenate([content_end, lone])
        order = np.argsort(term, kind="stable")
        term, content_end = term[order], content_end[order]
    next_start = term + 1
    start = np.concatenate([[0], next_start[:-1]])[: len(term)].astype(np.int64)
    if eof and n > (int(next_start[-1]) if len(term) else 0):  # last line without a line end
        start = np.append(start, int(next_start[-1]) if len(term) else 0)
        content_end = np.append(content_end, n)
        next_start = np.append(next_start, n)
    if b'"' in buf:
        parity = np.logical_xor.accumulate(arr == _QUOTE)
        parity_end = parity[np.maximum(next_start - 1, 0)] & (next_start > 0)
    else:
        parity_end = np.zeros(len(start), dtype=bool)
    return _Lines(start, content_end.astype(np.int64), next_start.astype(np.int64), parity_end)


@dataclass
class CsvChunk:
    """Whole records of a CSV file: the bytes, the first line's number, the split result."""

    data: bytes
    first_line: int
    offset: int  # byte offset of ``data`` in the (decompressed) file
    rec_first: np.ndarray = field(repr=False)  # index of each record's first line
    rec_last: np.ndarray = field(repr=False)  # index of each record's last line
    rec_ref: np.ndarray = field(repr=False)  # quote parity at each record's start
    lines: _Lines = field(repr=False)

    @property
    def n_records(self) -> int:
        return len(self.rec_first)


def _split_records(buf: bytes, eof: bool, max_records: int) -> tuple[_Lines, list[np.ndarray], int]:
    """Records of ``buf`` (starting at a record start): (line layout, [first, last, ref], n).

    Records end at a line end with even quote parity; a multi-line record that does not parse
    as one record is cut after its first line, which then stands alone (parsed or rejected).
    Stops after ``max_records``; without ``eof``, a record still open at the end is left.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    lines = _line_layout(arr, buf, eof)
    n_lines = len(lines.start)
    firsts: list[np.ndarray] = []
    lasts: list[np.ndarray] = []
    refs: list[np.ndarray] = []
    count = 0
    i, ref = 0, False
    boundaries = {
        False: np.flatnonzero(~lines.parity_end),
        True: np.flatnonzero(lines.parity_end),
    }

    def take(first: np.ndarray, last: np.ndarray, parity: bool) -> None:
        nonlocal count
        firsts.append(first)
        lasts.append(last)
        refs.append(np.full(len(first), parity))
        count += len(first)

    while i < n_lines and count < max_records:
        ends = boundaries[ref]
        ends = ends[np.searchsorted(ends, i) :]
        ends = ends[: max_records - count]
        if len(ends) == 0:
            open_lines = n_lines - i
            if not eof and open_lines < MAX_RECORD_LINES:
                break  # the record may close in data not read yet
            ends = np.array([n_lines - 1])  # an unclosed record: judge it below
        first = np.concatenate([[i], ends[:-1] + 1])
        multi = np.flatnonzero(ends > first)
        bad = -1
        for k in multi:
            a, b = int(first[k]), int(ends[k])
            span_ok = b - a < MAX_RECORD_LINES and lines.parity_end[b] == ref
            if not span_ok or _decode_fields(buf[lines.start[a] : lines.end[b]]) is None:
                bad = int(k)
                break
        if bad < 0:
            take(first, ends, ref)
            i = int(ends[-1]) + 1
            continue
        take(first[:bad], ends[:bad], ref)
        lone = int(first[bad])  # the record's first line stands alone from here on
        take(np.array([lone]), np.array([lone]), ref)
        i, ref = lone + 1, bool(lines.parity_end[lone])
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return lines, [empty, empty, np.zeros(0, dtype=bool)], 0
    return (
        lines,
        [
            np.concatenate(firsts).astype(np.int64),
            np.concatenate(lasts).astype(np.int64),
            np.concatenate(refs),
        ],
        count,
    )


class CsvSplitter:
    """Cuts a CSV file (plain or gzip) into :class:`CsvChunk` of at most ``chunk_rows`` records.

    ``bytes_read`` (of the file as stored, for progress) grows as chunks are produced.
    """

    def __init__(self, path: Path, kind: str, header: CsvHeader, chunk_rows: int) -> None:
        self.path, self.kind, self.header, self.chunk_rows = path, kind, header, chunk_rows
        self.bytes_read = 0
        self.total_bytes = path.stat().st_size

    def __iter__(self) -> Iterator[CsvChunk]:
        try:
            with self.path.open("rb") as raw:
                stream: Any = gzip.GzipFile(fileobj=raw) if self.kind == "csv.gz" else raw
                yield from self._chunks(stream, raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise InputFileError(f"{self.path}: cannot read as {self.kind}: {exc}") from None

    def _chunks(self, stream: IO[bytes], raw: IO[bytes]) -> Iterator[CsvChunk]:
        skip = self.header.data_offset
        while skip:
            got = stream.read(min(skip, 1 << 20))
            if not got:
                return
            skip -= len(got)
        offset, line = self.header.data_offset, self.header.data_line
        buf, eof = b"", False
        bytes_per_line = 128.0
        want = self.chunk_rows + 1
        while True:
            while not eof and max(buf.count(b"\n"), buf.count(b"\r")) < want:
                block = stream.read(max(1 << 16, int(bytes_per_line * (want + 16)) - len(buf)))
                if not block:
                    eof = True
                    break
                buf += block
                if len(buf) > MAX_LINE_BYTES and b"\n" not in buf and b"\r" not in buf:
                    raise InputFileError(
                        f"{self.path}: line {line} is longer than"
                        f" {MAX_LINE_BYTES >> 20} MiB: not a CSV of open orders"
                    )
            self.bytes_read = raw.tell()
            if not buf:
                return
            lines, (first, last, ref), count = _split_records(buf, eof, self.chunk_rows)
            if count == 0:
                if eof:
                    return
                want += self.chunk_rows  # a long quoted record: read further
                continue
            used = int(lines.next_start[last[-1]])
            chunk_lines = _Lines(
                lines.start[: last[-1] + 1],
                lines.end[: last[-1] + 1],
                lines.next_start[: last[-1] + 1],
                lines.parity_end[: last[-1] + 1],
            )
            yield CsvChunk(buf[:used], line, offset, first, last, ref, chunk_lines)
            want = self.chunk_rows + 1
            bytes_per_line = max(16.0, used / max(int(last[-1]) + 1, 1))
            line += int(last[-1]) + 1
            offset += used
            buf = buf[used:]
            if eof and not buf:
                return


def split_chunk_bytes(data: bytes, first_line: int, offset: int) -> CsvChunk:
    """Re-split the bytes of one chunk (whole records, as cut by :class:`CsvSplitter`)."""
    lines, (first, last, ref), _ = _split_records(data, True, np.iinfo(np.int64).max)
    return CsvChunk(data, first_line, offset, first, last, ref, lines)


# -- CSV: parsing a chunk ----------------------------------------------------------------
def _field_counts(chunk: CsvChunk) -> np.ndarray:
    """Fields per record: separator commas (outside quotes) + 1."""
    arr = np.frombuffer(chunk.data, dtype=np.uint8)
    comma = arr == _COMMA
    start = chunk.lines.start[chunk.rec_first]
    end = chunk.lines.end[chunk.rec_last]
    if b'"' not in chunk.data:
        positions = np.flatnonzero(comma)
        return np.searchsorted(positions, end) - np.searchsorted(positions, start) + 1
    parity = np.logical_xor.accumulate(arr == _QUOTE)
    counts = np.zeros(len(start), dtype=np.int64)
    for ref in (False, True):
        positions = np.flatnonzero(comma & (parity == ref))
        mine = chunk.rec_ref == ref
        counts[mine] = np.searchsorted(positions, end[mine]) - np.searchsorted(
            positions, start[mine]
        )
    return counts + 1


def _not_utf8(data: bytes, starts: np.ndarray) -> list[int]:
    """Indices of the records (starting at ``starts``) holding bytes that are not UTF-8."""
    if not (np.frombuffer(data, dtype=np.uint8) >= 0x80).any():
        return []
    bad: list[int] = []
    view, position = memoryview(data), 0
    while position < len(data):
        try:
            str(view[position:], "utf-8")
            break
        except UnicodeDecodeError as exc:
            k = int(np.searchsorted(starts, position + exc.start, side="right")) - 1
            bad.append(k)
            position = int(starts[k + 1]) if k + 1 < len(starts) else len(data)
    return bad


def _problem_row(record: bytes, names: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(order_id when readable, reason) of a record that is not a well-formed row; the reason
    is None when the record is fine after all (Python's csv module is the reference)."""
    try:
        text = record.decode("utf-8")
    except UnicodeDecodeError:
        return None, NOT_UTF8
    if not text.strip():
        return None, "blank"
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
        reason = None
    except csv.Error:
        rows = list(csv.reader(io.StringIO(text, newline="")))
        reason = "unparsable CSV (unbalanced quotes)"
    fields = rows[0] if rows else []
    order_id = None
    if "order_id" in names and names.index("order_id") < len(fields):
        order_id = fields[names.index("order_id")].strip() or None
    if reason is None and len(rows) != 1:
        reason = "unparsable CSV (unbalanced quotes)"
    if reason is None and len(fields) != len(names):
        reason = f"expected {len(names)} fields, found {len(fields)}"
    return order_id, reason


def _arrow_parse(
    data: bytes, names: tuple[str, ...], columns: tuple[str, ...], multiline: bool
) -> pa.Table:
    keep = [n for n in names if n in columns]
    unique = [n if n in columns else f"__ignored_{i}" for i, n in enumerate(names)]
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=unique, block_size=max(len(data) + 1, 1 << 20)),
        parse_options=pacsv.ParseOptions(newlines_in_values=multiline),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in keep},
            include_columns=keep,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _python_parse(
    records: list[bytes], names: tuple[str, ...], columns: tuple[str, ...]
) -> tuple[pa.Table, list[int]]:
    """Reference parse of well-formed-looking records; returns the table and the indices of
    records that failed after all."""
    keep = [n for n in names if n in columns]
    index = [names.index(n) for n in keep]
    cells: list[list[str | None]] = [[] for _ in keep]
    failed: list[int] = []
    for k, record in enumerate(records):
        fields = _decode_fields(record.rstrip(b"\r\n"))
        if fields is None or len(fields) != len(names):
            failed.append(k)
            continue
        for column, i in zip(cells, index, strict=True):
            column.append(fields[i] if fields[i] != "" else None)
    table = pa.table({n: pa.array(c, type=pa.string()) for n, c in zip(keep, cells, strict=True)})
    return table, failed


def parse_csv_chunk(chunk: CsvChunk, header: CsvHeader) -> pa.Table:
    """The raw partition of the chunk's records (blank lines as :data:`BLANK` rows)."""
    names = header.names
    starts = chunk.lines.start[chunk.rec_first]
    ends = chunk.lines.end[chunk.rec_last]
    record_lines = chunk.first_line + chunk.rec_first
    good = _field_counts(chunk) == len(names)
    problems: dict[int, tuple[str | None, str]] = {}
    for undecodable in _not_utf8(chunk.data, starts):  # pyarrow skips ignored columns
        good[undecodable] = False
        problems[undecodable] = (None, NOT_UTF8)
    for k in np.flatnonzero(~good):
        if int(k) in problems:
            continue
        order_id, reason = _problem_row(chunk.data[starts[k] : ends[k]], names)
        if reason is None:
            good[k] = True
        else:
            problems[int(k)] = (order_id, BLANK if reason == "blank" else reason)
    good_idx = np.flatnonzero(good)
    table = _parse_good(chunk, good_idx, header, problems)
    if problems:
        good_idx = good_idx[~np.isin(good_idx, np.fromiter(problems, dtype=np.int64))]
    table = table.append_column(LINE_COLUMN, pa.array(record_lines[good_idx], type=pa.int64()))
    table = table.append_column(PROBLEM_COLUMN, pa.nulls(len(good_idx), type=pa.string()))
    if problems:
        ids = [problems[k][0] for k in sorted(problems)]
        extra = {
            name: pa.array(ids if name == "order_id" else [None] * len(ids), type=pa.string())
            for name in header.known
        }
        extra[LINE_COLUMN] = pa.array(record_lines[sorted(problems)], type=pa.int64())
        extra[PROBLEM_COLUMN] = pa.array([problems[k][1] for k in sorted(problems)], pa.string())
        table = pa.concat_tables([table, pa.table(extra, schema=table.schema)])
        table = table.take(pc.sort_indices(table, [(LINE_COLUMN, "ascending")]))
    return table


def _parse_good(
    chunk: CsvChunk, good_idx: np.ndarray, header: CsvHeader, problems: dict
) -> pa.Table:
    """Parse the good records with pyarrow; fall back to the csv module record by record if
    pyarrow fails or disagrees on the row count (records pyarrow cannot read become problems).
    """
    names, columns = header.names, header.columns
    starts = chunk.lines.start[chunk.rec_first]
    next_starts = chunk.lines.next_start[chunk.rec_last]
    if len(good_idx) == 0:
        return _python_parse([], names, columns)[0]
    # Runs of consecutive good records are contiguous bytes.
    breaks = np.flatnonzero(np.diff(good_idx) != 1)
    run_first = good_idx[np.concatenate([[0], breaks + 1])]
    run_last = good_idx[np.concatenate([breaks, [len(good_idx) - 1]])]
    if len(run_first) == 1 and run_first[0] == 0 and run_last[0] == chunk.n_records - 1:
        data = chunk.data
    else:
        data = b"".join(
            chunk.data[starts[a] : next_starts[b]] for a, b in zip(run_first, run_last, strict=True)
        )
    if data and data[-1:] not in (b"\n", b"\r"):
        data += b"\n"
    multiline = bool((chunk.rec_last[good_idx] > chunk.rec_first[good_idx]).any())
    try:
        table = _arrow_parse(data, names, columns, multiline)
        if table.num_rows == len(good_idx):
            return table
    except (pa.ArrowInvalid, pa.ArrowException):
        pass
    records = [chunk.data[starts[k] : next_starts[k]] for k in good_idx]
    table, failed = _python_parse(records, names, columns)
    for j in failed:
        k = int(good_idx[j])
        order_id, reason = _problem_row(records[j].rstrip(b"\r\n"), names)
        problems[k] = (order_id, reason if reason not in (None, "blank") else "unparsable CSV")
    return table


def problem_masks(raw: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Of a raw partition: the blank lines (skipped, not rows) and the rows that could not
    be parsed (rejected, their reason in :data:`PROBLEM_COLUMN`)."""
    problem = raw.column(PROBLEM_COLUMN)
    noted = problem.is_valid().to_numpy(zero_copy_only=False)
    blank = noted & pc.fill_null(pc.equal(problem, BLANK), False).to_numpy(zero_copy_only=False)
    return blank, noted & ~blank


# -- Parquet -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ParquetPiece:
    """Row groups of one Parquet file and the 1-based number of the first row."""

    path: str
    row_groups: tuple[int, ...]
    first_row: int
    rows: int


def parquet_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.parquet")) if path.is_dir() else [path]


def parquet_columns(path: Path, columns: tuple[str, ...] = OPEN_ORDER_COLUMNS) -> list[str]:
    """Column names of a Parquet input (the first file of a directory), checked."""
    files = parquet_files(path)
    try:
        names = list(pq.read_schema(files[0]).names)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{files[0]}: cannot read as parquet: {exc}") from None
    require_columns(names, path, columns)
    return names


def parquet_pieces(path: Path, target_rows: int) -> list[ParquetPiece]:
    """Whole row groups gathered into pieces of about ``target_rows`` rows, in file order."""
    pieces: list[ParquetPiece] = []
    first_row = 1
    for file in parquet_files(path):
        try:
            meta = pq.ParquetFile(file).metadata
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"{file}: cannot read as parquet: {exc}") from None
        groups: list[int] = []
        rows = 0
        for g in range(meta.num_row_groups):
            groups.append(g)
            rows += meta.row_group(g).num_rows
            if rows >= target_rows:
                pieces.append(ParquetPiece(str(file.resolve()), tuple(groups), first_row, rows))
                first_row += rows
                groups, rows = [], 0
        if groups:
            pieces.append(ParquetPiece(str(file.resolve()), tuple(groups), first_row, rows))
            first_row += rows
    return pieces


def _with_lines(
    table: pa.Table, first_row: int, columns: tuple[str, ...] = OPEN_ORDER_COLUMNS
) -> pa.Table:
    keep = [n for n in table.column_names if n in columns]
    table = table.select(keep)
    table = table.append_column(
        LINE_COLUMN, pa.array(np.arange(first_row, first_row + table.num_rows), type=pa.int64())
    )
    return table.append_column(PROBLEM_COLUMN, pa.nulls(table.num_rows, type=pa.string()))


def read_parquet_piece(piece: ParquetPiece) -> pa.Table:
    """The raw partition of one piece (line = 1-based row number in the input)."""
    try:
        file = pq.ParquetFile(piece.path)
        known = [n for n in file.schema_arrow.names if n in OPEN_ORDER_COLUMNS]
        table = file.read_row_groups(list(piece.row_groups), columns=known)
    except (OSError, pa.ArrowException) as exc:
        raise InputFileError(f"{piece.path}: cannot read as parquet: {exc}") from None
    return _with_lines(table, piece.first_row)


def iter_parquet(
    path: Path, chunk_rows: int, columns: tuple[str, ...] = OPEN_ORDER_COLUMNS
) -> Iterator[tuple[pa.Table, int]]:
    """Stream a Parquet file or directory as raw partitions of ``columns``, ``chunk_rows``
    rows each (a file's last may be shorter), with the bytes read before each.

    Read one row group at a time: pyarrow's batch reader over a whole file holds memory that
    grows with the file's row groups (25 MB for 10 row groups of 100k orders, 78 MB for 50;
    13 MB one group at a time), so the peak grew with the input."""
    first_row = 1
    done = 0
    for file in parquet_files(path):
        try:
            for table in _row_group_chunks(pq.ParquetFile(file), chunk_rows, columns):
                yield _with_lines(table, first_row, columns), done
                first_row += table.num_rows
        except (OSError, pa.ArrowException) as exc:
            raise InputFileError(f"{file}: cannot read as parquet: {exc}") from None
        done += file.stat().st_size


def _row_group_chunks(
    handle: pq.ParquetFile, chunk_rows: int, columns: tuple[str, ...]
) -> Iterator[pa.Table]:
    """The file's rows of ``columns`` in tables of ``chunk_rows`` (the last may be shorter),
    read row group by row group; a chunk spanning two groups is copied into one."""
    known = [n for n in handle.schema_arrow.names if n in columns]
    pieces = _FixedRowTables(chunk_rows)
    for group in range(handle.num_row_groups):
        # One thread: the engine already keeps the cores busy (and it costs less CPU).
        batches = handle.iter_batches(
            batch_size=chunk_rows, row_groups=[group], columns=known, use_threads=False
        )
        for batch in batches:
            yield from pieces.add(pa.Table.from_batches([batch]))
    rest = pieces.rest()
    if rest is not None:
        yield rest


class _FixedRowTables:
    """Tables handed in at any sizes, given back in tables of exactly ``rows`` rows (and
    one shorter rest), each with one Arrow chunk per column (copied only when the rows
    came in several pieces)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> list[pa.Table]:
        """Queue ``table``'s rows; the full tables of ``rows`` rows they complete."""
        if table.num_rows:
            self._pending.append(table)
            self._pending_rows += table.num_rows
        full = []
        while self._pending_rows >= self.rows:
            full.append(self._take(self.rows))
        return full

    def rest(self) -> pa.Table | None:
        """The queued rows short of a full table, if any."""
        return self._take(self._pending_rows) if self._pending_rows else None

    def _take(self, rows: int) -> pa.Table:
        queued = pa.concat_tables(self._pending)
        taken, left = queued.slice(0, rows), queued.slice(rows)
        self._pending = [left] if left.num_rows else []
        self._pending_rows = left.num_rows
        if any(column.num_chunks > 1 for column in taken.columns):
            taken = taken.combine_chunks()
        return taken


# -- writing -----------------------------------------------------------------------------
class TableSink:
    """Append frames to a CSV (optionally gzip) or Parquet file through a hidden temporary
    beside ``path``; :meth:`commit` renames it to ``path``, :meth:`abort` removes it.

    ``schema`` fixes the column types of every chunk (timestamps become dates in CSV).
    Parquet rows are written in row groups of ``row_group_rows`` whatever the sizes of the
    tables handed in, so the same rows give the same file.
    """

    def __init__(
        self,
        path: Path,
        schema: pa.Schema,
        free_text: tuple[str, ...] | None = None,
        row_group_rows: int = PARQUET_ROW_GROUP_ROWS,
    ) -> None:
        self.path = path
        self.kind = output_kind(path, allow_directory=False)
        self.schema = schema
        # Columns whose values may need CSV quoting (default: every string column).
        self.free_text = free_text
        self.tmp = temp_path_for(path)
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet: pq.ParquetWriter | None = None
        self._row_groups = _FixedRowTables(row_group_rows)  # Parquet rows not yet written
        self._stream: Any = None
        self._header_done = False
        if self.kind == "parquet":
            self._parquet = pq.ParquetWriter(self.tmp, schema)
        else:
            self._stream = pa.OSFile(str(self.tmp), "wb")
            if self.kind == "csv.gz":
                self._stream = pa.CompressedOutputStream(self._stream, "gzip")
            self._csv_schema = pa.schema(
                [
                    pa.field(f.name, pa.date32()) if pa.types.is_timestamp(f.type) else f
                    for f in schema
                ]
            )

    def write(self, frame: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self.write_table(table)

    def write_table(self, table: pa.Table) -> None:
        table = table.cast(self.schema)
        self.rows += table.num_rows
        if self._parquet is not None:
            for group in self._row_groups.add(table):
                self._write_row_group(group)
            return
        table = table.cast(self._csv_schema)
        if not self._header_done:
            self._stream.write((",".join(map(_csv_cell, table.column_names)) + "\n").encode())
            self._header_done = True
        try:
            parts = _csv_rows(table, self.free_text)
        except pa.ArrowInvalid:  # a value needs quotes after all
            parts = [_csv_body(table, "needed")]
        for part in parts:  # Arrow buffers, written without a copy into Python bytes
            self._stream.write(part)

    def _write_row_group(self, group: pa.Table) -> None:
        assert self._parquet is not None
        self._parquet.write_table(group, row_group_size=max(group.num_rows, 1))

    def commit(self) -> None:
        if self._parquet is not None:
            rest = self._row_groups.rest()
            if rest is not None:
                self._write_row_group(rest)
            elif not self.rows:  # an empty output: one empty row group
                self._write_row_group(self.schema.empty_table())
            self._parquet.close()
        else:
            if not self._header_done:
                self.write_table(self.schema.empty_table())
            self._stream.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            if self._parquet is not None:
                self._parquet.close()
            elif self._stream is not None:
                self._stream.close()
        except (OSError, pa.ArrowException):
            pass
        self.tmp.unlink(missing_ok=True)


def _csv_body(table: pa.Table, style: str) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    options = pacsv.WriteOptions(include_header=False, quoting_style=style)
    pacsv.write_csv(table, sink, write_options=options)
    return sink.getvalue()


def _csv_cell(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_rows(table: pa.Table, columns: tuple[str, ...] | None) -> list[pa.Buffer]:
    """The CSV body of ``table`` (in parts), each row's bytes depending on that row alone: a
    row holding a string that needs quotes (a comma, quote or line end) has its string cells
    quoted, the others are written bare. So the output does not depend on how rows are cut
    into chunks (chunk size, engine)."""
    needs = np.zeros(table.num_rows, dtype=bool)
    for name in columns if columns is not None else table.column_names:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            if not any(_holds_csv_specials(chunk) for chunk in column.chunks):
                continue
            hit = pc.fill_null(pc.match_substring_regex(column, '[,"\r\n]'), False)
            needs |= hit.to_numpy(zero_copy_only=False)
    if not needs.any():
        return [_csv_body(table, "none")]
    starts = [0, *(np.flatnonzero(np.diff(needs)) + 1).tolist()]
    ends = [*starts[1:], table.num_rows]
    return [
        _csv_body(table.slice(start, end - start), "needed" if needs[start] else "none")
        for start, end in zip(starts, ends, strict=True)
    ]


_CSV_SPECIALS = np.zeros(256, dtype=bool)
_CSV_SPECIALS[[ord(","), ord('"'), ord("\r"), ord("\n")]] = True


def _holds_csv_specials(chunk: pa.Array) -> bool:
    """Whether any byte of a string array's data is a comma, quote or line end (one pass
    over the bytes; which rows hold them is then found per row)."""
    data = chunk.buffers()[2]
    return data is not None and bool(_CSV_SPECIALS[np.frombuffer(data, dtype=np.uint8)].any())


def head_rows(path: Path, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of a table written by :class:`TableSink` (cheap on big files)."""
    if output_kind(path, allow_directory=False) == "parquet":
        batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
        first = next(batches, None)
        return first.to_pandas() if first is not None else pd.DataFrame()
    return pd.read_csv(path, nrows=rows, dtype=str, keep_default_na=False)
