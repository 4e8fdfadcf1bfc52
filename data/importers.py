"""Importing shipment history from sellers' exports and from the public Olist orders table.

Both importers read CSV text exactly as written (quoting, a UTF-8 byte-order mark, ``,``
``;`` tab or ``|`` delimiters), keep each record's physical line number, map the columns to
the history schema (:data:`model.schema.HISTORY_COLUMNS`) and run the same row-level
validation as training and scoring (:func:`model.schema.validate_history`). The result is
the valid rows, typed, plus one reject per bad row (line, order_id, column, reason); rows
the Olist importer leaves out on purpose (orders never handed to a carrier) are *skipped*
and counted by reason, not rejected.
"""

from __future__ import annotations

import csv
import gzip
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from data.tables import write_table
from model.errors import InputFileError, SchemaError
from model.schema import HISTORY_COLUMNS, REJECT_COLUMNS, iso_country_codes, validate_history

__all__ = [
    "DATE_COLUMNS",
    "OLIST_REQUIRED",
    "ColumnMapError",
    "CsvText",
    "ImportResult",
    "import_olist",
    "import_seller_export",
    "parse_column_map",
    "read_csv_text",
    "rejects_path_for",
    "summarise_reasons",
    "write_import",
]

DATE_COLUMNS: tuple[str, ...] = ("shipped_at", "deadline", "delivered_at", "ordered_at")
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")

OLIST_REQUIRED: tuple[str, ...] = (
    "order_id",
    "order_status",
    "order_purchase_timestamp",
    "order_delivered_carrier_date",
    "order_delivered_customer_date",
    "order_estimated_delivery_date",
)
OLIST_MAP: dict[str, str] = {
    "order_id": "order_id",
    "shipped_at": "order_delivered_carrier_date",
    "deadline": "order_estimated_delivery_date",
    "delivered_at": "order_delivered_customer_date",
    "ordered_at": "order_purchase_timestamp",
}
OLIST_COUNTRY = "BR"
CUSTOMER_REQUIRED: tuple[str, ...] = ("customer_id", "customer_state")


class ColumnMapError(SchemaError):
    """A ``--map``/``--country`` option is malformed or names a column the input lacks."""


@dataclass(frozen=True)
class CsvText:
    """A CSV file as text cells (blank cells missing) and each record's first line number."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray
    delimiter: str
    encoding: str
    malformed: pd.DataFrame  # rejects for records with more fields than the header


@dataclass
class ImportResult:
    """Valid history rows (typed, :data:`HISTORY_COLUMNS` plus ``line``), rejects, skips."""

    history: pd.DataFrame
    rejects: pd.DataFrame
    rows_read: int
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())


# -- reading ----------------------------------------------------------------------------------
def _open_text(path: Path, encoding: str) -> TextIO:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter that splits the header into the most fields (comma on ties)."""
    best, best_fields = ",", 1
    for delimiter in DELIMITERS:
        fields = len(next(csv.reader([header_line], delimiter=delimiter), []))
        if fields > best_fields:
            best, best_fields = delimiter, fields
    return best


def _unique_header(names: Sequence[str]) -> list[str]:
    seen: Counter[str] = Counter()
    out = []
    for raw in names:
        name = raw.strip()
        out.append(name if not seen[name] else f"{name}.{seen[name]}")
        seen[name] += 1
    return out


def read_csv_text(path: Path) -> CsvText:
    """Read a CSV (or ``.csv.gz``) file as text, remembering where each record starts.

    UTF-8 with or without a byte-order mark; files that are not UTF-8 are read as
    Windows-1252 (what spreadsheet programs write) and say so in ``encoding``. Quoted
    fields may hold delimiters, doubled quotes and line breaks. Blank lines are ignored;
    a record with fewer fields than the header is padded with blanks, one with more is
    rejected (it cannot be mapped to columns safely).
    """
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return _read_csv_text(path, encoding)
        except UnicodeDecodeError:
            continue
        except (OSError, csv.Error) as exc:
            raise InputFileError(f"{path}: cannot read as CSV: {exc}") from None
    raise InputFileError(f"{path}: cannot decode as UTF-8 or Windows-1252 text")


def _read_csv_text(path: Path, encoding: str) -> CsvText:
    with _open_text(path, encoding) as handle:
        first = handle.readline()
        if not first.strip():
            raise InputFileError(f"{path}: empty file (no header line)")
        delimiter = _sniff_delimiter(first)
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter, strict=False)
        header = _unique_header(next(reader))
        width = len(header)
        records: list[list[str]] = []
        lines: list[int] = []
        bad_lines: list[int] = []
        bad_reasons: list[str] = []
        bad_ids: list[str | None] = []
        previous_end = reader.line_num
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not record or all(not cell.strip() for cell in record):
                continue
            if len(record) > width:
                bad_lines.append(start)
                bad_ids.append(None)
                bad_reasons.append(
                    f"record has {len(record)} fields but the header has {width}"
                    " (unquoted delimiter in a value?)"
                )
                continue
            records.append(record + [""] * (width - len(record)))
            lines.append(start)
    frame = pd.DataFrame(records, columns=header, dtype=object)
    if len(frame):
        frame = frame.apply(lambda column: column.str.strip())
        frame = frame.mask(frame == "")
    malformed = pd.DataFrame(
        {"line": bad_lines, "order_id": bad_ids, "column": "(record)", "reason": bad_reasons},
        columns=list(REJECT_COLUMNS),
    )
    return CsvText(
        path=path,
        frame=frame.reset_index(drop=True),
        lines=np.asarray(lines, dtype=np.int64),
        delimiter=delimiter,
        encoding="utf-8" if encoding == "utf-8-sig" else encoding,
        malformed=malformed,
    )


# -- mapping ----------------------------------------------------------------------------------
def parse_column_map(specs: Iterable[str]) -> dict[str, str]:
    """``["shipped_at=Ship Date", ...]`` -> ``{"shipped_at": "Ship Date"}``, checked."""
    mapping: dict[str, str] = {}
    for spec in specs:
        column, sep, source = spec.partition("=")
        column, source = column.strip(), source.strip()
        if not sep or not column or not source:
            raise ColumnMapError(
                f"--map {spec!r}: expected COLUMN=SOURCE, e.g. shipped_at=Ship Date"
            )
        if column not in HISTORY_COLUMNS:
            raise ColumnMapError(
                f"--map {spec!r}: {column!r} is not a history column"
                f" (one of: {', '.join(HISTORY_COLUMNS)})"
            )
        if column in mapping and mapping[column] != source:
            raise ColumnMapError(
                f"--map {spec!r}: {column} is already mapped to {mapping[column]!r}"
            )
        mapping[column] = source
    return mapping


def _find_source(columns: Sequence[str], source: str) -> str | None:
    if source in columns:
        return source
    folded = [c for c in columns if c.strip().casefold() == source.strip().casefold()]
    return folded[0] if len(folded) == 1 else None


def _resolve_map(table: CsvText, mapping: dict[str, str]) -> dict[str, str]:
    """History column -> input column: explicit ``--map`` entries, then same-named columns."""
    columns = list(table.frame.columns)
    resolved: dict[str, str] = {}
    for column, source in mapping.items():
        found = _find_source(columns, source)
        if found is None:
            raise ColumnMapError(
                f"--map {column}={source}: {table.path} has no column {source!r}"
                f" (its columns: {', '.join(columns) or 'none'})"
            )
        resolved[column] = found
    for column in HISTORY_COLUMNS:
        if column not in resolved:
            found = _find_source(columns, column)
            if found is not None:
                resolved[column] = found
    return resolved


def _apply_date_format(
    frame: pd.DataFrame, date_format: str
) -> tuple[pd.DataFrame, dict[tuple[int, str], str]]:
    """Parse the date columns with ``date_format`` into ISO text; remember failing cells."""
    frame = frame.copy()
    failures: dict[tuple[int, str], str] = {}
    for column in DATE_COLUMNS:
        if column not in frame.columns:
            continue
        text = frame[column]
        present = text.notna().to_numpy()
        parsed = pd.to_datetime(text, format=date_format, errors="coerce", utc=True)
        bad = present & parsed.isna().to_numpy()
        iso = parsed.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
        # A cell that does not match the format must fail validation whatever it looks like.
        iso[bad] = "\x00" + text[bad].astype(str)
        iso[~present] = None
        frame[column] = iso
        for position in np.flatnonzero(bad):
            failures[(int(position), column)] = (
                f"'{text.iloc[position]}' does not match --date-format {date_format}"
            )
    return frame, failures


def _validate_mapped(
    mapped: pd.DataFrame,
    lines: np.ndarray,
    *,
    date_failures: dict[tuple[int, str], str] | None = None,
    extra_rejects: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    validated = validate_history(mapped, lines=lines)
    rejects = validated.rejects
    if date_failures:
        by_line = {(int(lines[pos]), col): reason for (pos, col), reason in date_failures.items()}
        fixed = [
            by_line.get((int(line), column), reason)
            for line, column, reason in zip(
                rejects["line"], rejects["column"], rejects["reason"], strict=True
            )
        ]
        rejects = rejects.assign(reason=fixed)
    if extra_rejects is not None and len(extra_rejects):
        rejects = pd.concat([rejects, extra_rejects], ignore_index=True)
        rejects = rejects.sort_values("line", kind="stable").reset_index(drop=True)
    history = validated.valid[["line", *HISTORY_COLUMNS]]
    return history, rejects[list(REJECT_COLUMNS)]


def import_seller_export(
    table: CsvText,
    column_map: dict[str, str],
    *,
    date_format: str | None = None,
    country: str | None = None,
) -> ImportResult:
    """Map a seller's export to the history schema and validate every row.

    ``column_map`` maps history columns to the export's column names; history columns the
    map leaves out are taken from same-named export columns (case-insensitive).
    ``date_format`` (``strptime`` codes, e.g. ``%d/%m/%Y``) parses every date column;
    without it dates must be ISO 8601. ``country`` fills ``destination_country`` where the
    export has no such column or leaves it blank.
    """
    resolved = _resolve_map(table, column_map)
    if country is not None:
        country = country.strip().upper()
        if country not in iso_country_codes():
            raise ColumnMapError(f"--country {country!r} is not an ISO 3166-1 alpha-2 code")
    missing = [
        c
        for c in ("order_id", "destination_country", "shipped_at", "deadline")
        if c not in resolved and not (c == "destination_country" and country)
    ]
    if missing:
        hint = " or --country CC" if "destination_country" in missing else ""
        raise ColumnMapError(
            f"{table.path}: no column for {', '.join(missing)}: add --map COLUMN=SOURCE{hint}"
            f" (its columns: {', '.join(table.frame.columns) or 'none'})"
        )
    mapped = pd.DataFrame({column: table.frame[source] for column, source in resolved.items()})
    notes = [f"{column} <- {source}" for column, source in resolved.items()]
    if country is not None:
        given = mapped.get("destination_country")
        mapped["destination_country"] = (
            given.fillna(country) if given is not None else pd.Series(country, index=mapped.index)
        )
        notes.append(f"destination_country defaults to {country}")
    failures: dict[tuple[int, str], str] = {}
    if date_format:
        mapped, failures = _apply_date_format(mapped, date_format)
    history, rejects = _validate_mapped(
        mapped, table.lines, date_failures=failures, extra_rejects=table.malformed
    )
    return ImportResult(
        history=history,
        rejects=rejects,
        rows_read=len(table.frame) + len(table.malformed),
        notes=notes,
    )


def import_olist(orders: CsvText, customers: CsvText | None = None) -> ImportResult:
    """Map the Olist orders table (and optionally its customers table) to history rows.

    ``destination_country`` is BR; ``destination_region`` is the customer's state when the
    customers table is given; ``shipped_at`` is the carrier hand-off, ``deadline`` the
    estimated delivery date shown at purchase, ``delivered_at`` the delivery to the
    customer, ``ordered_at`` the purchase time; ``shipping_method`` is ``unknown``. Orders
    never handed to a carrier are skipped and counted by their status.
    """
    frame = orders.frame
    missing = [c for c in OLIST_REQUIRED if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{orders.path} is not an Olist orders table: missing column(s) {', '.join(missing)}"
        )
    handed_over = frame["order_delivered_carrier_date"].notna().to_numpy()
    status = frame["order_status"].fillna("no status").astype(str)
    skipped = {
        f"never handed to a carrier (status {name})": int(count)
        for name, count in status[~handed_over].value_counts().sort_index().items()
    }
    kept = frame.loc[handed_over]
    mapped = pd.DataFrame({column: kept[source] for column, source in OLIST_MAP.items()})
    mapped["destination_country"] = OLIST_COUNTRY
    mapped["shipping_method"] = "unknown"
    notes: list[str] = []
    if customers is not None:
        absent = [c for c in CUSTOMER_REQUIRED if c not in customers.frame.columns]
        if absent:
            raise SchemaError(
                f"{customers.path} is not an Olist customers table:"
                f" missing column(s) {', '.join(absent)}"
            )
        if "customer_id" not in kept.columns:
            raise SchemaError(f"{orders.path}: no customer_id column to join the customers on")
        states = (
            customers.frame.dropna(subset=["customer_id"])
            .drop_duplicates("customer_id")
            .set_index("customer_id")["customer_state"]
        )
        mapped["destination_region"] = kept["customer_id"].map(states)
        unmatched = int(mapped["destination_region"].isna().sum())
        if unmatched:
            notes.append(f"{unmatched:,} orders have no customer row: region left empty")
    else:
        notes.append("no customers table: destination_region left empty")
    history, rejects = _validate_mapped(
        mapped.reset_index(drop=True),
        orders.lines[handed_over],
        extra_rejects=orders.malformed,
    )
    return ImportResult(
        history=history,
        rejects=rejects,
        rows_read=len(frame) + len(orders.malformed),
        skipped=skipped,
        notes=notes,
    )


# -- writing ----------------------------------------------------------------------------------
def rejects_path_for(out: Path) -> Path:
    """``history.csv`` -> ``history.rejects.csv`` beside it (as ``score`` names its rejects)."""
    return out.with_name(out.name.split(".")[0] + ".rejects.csv")


def write_import(result: ImportResult, out: Path) -> Path:
    """Write the valid rows to ``out`` (CSV, CSV.gz or Parquet) and the rejects beside it."""
    write_table(result.history[list(HISTORY_COLUMNS)], out)
    rejects_path = rejects_path_for(out)
    write_table(result.rejects, rejects_path)
    return rejects_path


_QUOTED = re.compile(r"'[^']*'")


def summarise_reasons(rejects: pd.DataFrame) -> dict[str, int]:
    """Reject counts by column and reason, quoted cell values elided, most frequent first."""
    if rejects.empty:
        return {}
    keys = (
        rejects["column"].astype(str)
        + ": "
        + rejects["reason"].astype(str).str.replace(_QUOTED, "'...'", regex=True)
    )
    return {str(k): int(v) for k, v in keys.value_counts().items()}
