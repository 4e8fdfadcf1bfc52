"""Column contracts and row-level validation of shipment frames.

Both the shipment history and open orders arrive as text (CSV cells, JSON strings). The
validators here parse raw values column by column, vectorised, and return the rows that
parse plus one reject record per failing row (its 1-based input line, order_id, column and
reason). Every bad row is reported, never only the first; a missing required column is a
:class:`~model.errors.SchemaError` because no row can be used then.

One rule set serves pandas frames (:func:`validate_open_orders`, :func:`validate_history`)
and Arrow tables (:func:`validate_open_orders_table`, the batch path). Text is handled with
Arrow compute kernels. A date or number column whose cells all have the plain form
(``YYYY-MM-DD`` in 1900..2199; digits with at most one decimal point) is converted by Arrow;
any other column goes whole through the pandas parsers, the reference, so both paths give
the same values and the same reasons whatever the mix of cells.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pycountry

from model.errors import SchemaError

__all__ = [
    "HISTORY_COLUMNS",
    "HISTORY_REQUIRED",
    "MAX_DATE",
    "MIN_DATE",
    "OPEN_ORDER_COLUMNS",
    "OPEN_ORDER_REQUIRED",
    "REJECT_COLUMNS",
    "Validated",
    "ValidatedColumns",
    "check_as_of",
    "date_range_text",
    "iso_country_codes",
    "strip_text",
    "validate_history",
    "validate_open_orders",
    "validate_open_orders_table",
]

HISTORY_REQUIRED: tuple[str, ...] = ("order_id", "destination_country", "shipped_at", "deadline")
HISTORY_COLUMNS: tuple[str, ...] = (
    "order_id",
    "destination_country",
    "shipping_method",
    "shipped_at",
    "deadline",
    "delivered_at",
    "destination_region",
    "weight_g",
    "declared_value_usd",
    "ordered_at",
)
OPEN_ORDER_REQUIRED: tuple[str, ...] = (
    "order_id",
    "destination_country",
    "shipping_method",
    "shipped_at",
    "deadline",
)
OPEN_ORDER_COLUMNS: tuple[str, ...] = (
    "order_id",
    "destination_country",
    "shipping_method",
    "shipped_at",
    "deadline",
    "delivered_at",
    "extensions",
    "dispute_opened_at",
    "destination_region",
    "weight_g",
    "declared_value_usd",
    "ordered_at",
)
REJECT_COLUMNS: tuple[str, ...] = ("line", "order_id", "column", "reason")
UNKNOWN_METHOD = "unknown"
FIRST_DATA_LINE = 2  # line 1 of a CSV file is its header

# Dates outside this range are refused everywhere (files, HTTP, --as-of): the scoring arrays
# hold nanosecond timestamps, which end in 2262, and a deadline plus extensions must stay
# representable; no shipment of this business predates 1900.
MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(2199, 12, 31)


def date_range_text() -> str:
    return f"the supported range {MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}"


def check_as_of(as_of: date, name: str = "as_of") -> date:
    """``as_of`` itself, or a one-line :class:`SchemaError` when it is out of range."""
    if not MIN_DATE <= as_of <= MAX_DATE:
        raise SchemaError(f"{name} {as_of.isoformat()} is out of {date_range_text()}")
    return as_of


@lru_cache(maxsize=1)
def iso_country_codes() -> frozenset[str]:
    """The ISO 3166-1 alpha-2 codes (upper case)."""
    return frozenset(c.alpha_2 for c in pycountry.countries)


@dataclass(frozen=True)
class Validated:
    """The rows that parsed (typed columns, input order) and one record per rejected row.

    ``valid`` keeps a ``line`` column with each row's 1-based input line number.
    ``rejects`` has the columns of :data:`REJECT_COLUMNS`, sorted by line.
    """

    valid: pd.DataFrame
    rejects: pd.DataFrame

    @property
    def n_rows(self) -> int:
        return len(self.valid) + len(self.rejects)


@dataclass(frozen=True)
class ValidatedColumns:
    """What :func:`validate_open_orders_table` returns: the valid rows as columns and the
    rejects as an Arrow table (:data:`REJECT_COLUMNS`, sorted by line).

    ``valid`` maps ``line`` and each validated column to an array of the valid rows, in
    input order: the text columns (order_id, destination_country, shipping_method,
    destination_region) as Arrow string arrays, dates as ``datetime64[ns]`` (NaT when
    missing), ``weight_g`` and ``declared_value_usd`` as float64, ``extensions`` as int64.
    :func:`service.scoring.score_columns` takes it as it is.
    """

    valid: dict[str, Any]
    rejects: pa.Table

    @property
    def n_valid(self) -> int:
        return len(self.valid["line"])


_TEXT_COLUMNS = ("order_id", "destination_country", "shipping_method", "destination_region")
_DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min
_MIN_DAY = (MIN_DATE - date(1970, 1, 1)).days
_MAX_DAY = (MAX_DATE - date(1970, 1, 1)).days
# Plain numbers: digits and a point, short enough that every parser rounds them the same way.
_PLAIN_NUMBER_BYTES = 15


class _Collector:
    """Collects the first failing column and reason per row (rows keep the first failure).

    A reason is a string, or a function of the row positions that builds one per row (so
    messages are only built for the rows that fail).
    """

    def __init__(self, n: int) -> None:
        self.column = np.empty(n, dtype=object)  # all None (np.full is slow for objects)
        self.reason = np.empty(n, dtype=object)
        self.failed = np.zeros(n, dtype=bool)

    def add(
        self, mask: np.ndarray, column: str, reason: str | Callable[[np.ndarray], np.ndarray]
    ) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.failed
        if not mask.any():
            return
        self.failed |= mask
        self.column[mask] = column
        self.reason[mask] = reason if isinstance(reason, str) else reason(np.flatnonzero(mask))


def _string_series(text: pa.Array) -> pd.Series:
    """Arrow text as the pandas ``string`` Series that ``.astype("string")`` gives."""
    return pd.Series(pd.arrays.ArrowStringArray(text))


class _Column:
    """One input column as stripped text (an Arrow string array, null where missing) plus
    its blank mask, computed once.

    An Arrow column of timestamps, dates, integers or float64 (typed Parquet, say) keeps its
    values in ``arrow`` and makes its text only when asked (:func:`_typed`); a pandas column
    of a datetime or numeric dtype keeps its values in ``typed`` and its text unstripped, as
    the reference parsers expect. A column absent from the input is all blank and costs no
    string work.
    """

    def __init__(
        self,
        text: pa.Array | Callable[[], pa.Array],
        blank: np.ndarray,
        typed: pd.Series | None = None,
        *,
        arrow: pa.Array | None = None,
    ) -> None:
        self._text = text
        self.blank = blank
        self.typed = typed
        self.arrow = arrow  # an Arrow column of instants or plain numbers (:func:`_typed`)
        self.absent = False

    @property
    def text(self) -> pa.Array:
        """The cells as text; for a typed Arrow column made on first use (for messages)."""
        if callable(self._text):
            self._text = self._text()
        return self._text

    @classmethod
    def missing(cls, n: int) -> _Column:
        column = cls(pa.nulls(n, type=pa.string()), np.ones(n, dtype=bool))
        column.absent = True
        return column

    @classmethod
    def from_series(cls, raw: pd.Series) -> _Column:
        raw = raw.reset_index(drop=True)
        if pd.api.types.is_datetime64_any_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            return cls(_text_of_values(raw), np.asarray(raw.isna(), dtype=bool), raw)
        strings = raw.astype("string")
        try:
            values = pa.array(strings.array)
        except (TypeError, pa.ArrowException):  # a non-Arrow string storage
            values = pa.array(strings.to_numpy(dtype=object, na_value=None), type=pa.string())
        return cls.from_text(values)

    @classmethod
    def from_arrow(cls, raw: pa.Array | pa.ChunkedArray) -> _Column:
        if isinstance(raw, pa.ChunkedArray):
            raw = raw.combine_chunks() if raw.num_chunks != 1 else raw.chunk(0)
        kind = raw.type
        if (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind)
        ):
            return cls.from_text(raw)
        typed = _typed(raw)
        if typed is not None:
            return typed
        return cls.from_series(raw.to_pandas())  # typed: as a pandas frame would hold it

    @classmethod
    def from_text(cls, values: pa.Array | pa.ChunkedArray) -> _Column:
        text = strip_text(values)
        _, starts, ends = _string_bytes(text)
        blank = ~text.is_valid().to_numpy(zero_copy_only=False) | (starts == ends)
        return cls(text, blank)

    def series(self) -> pd.Series:
        """The text as the pandas ``string`` Series the reference parsers take."""
        return _string_series(self.text)

    def message(self, text: str) -> Callable[[np.ndarray], np.ndarray]:
        """A reason for :class:`_Collector`: each failing cell, quoted, then ``text``."""
        return lambda rows: self.quoted(rows) + text

    def quoted(self, rows: np.ndarray) -> np.ndarray:
        """Cells at ``rows`` as ``'value'`` for error messages."""
        values = self.text.take(pa.array(rows, type=pa.int64())).to_pylist()
        return np.array([f"'{'' if v is None else v}'" for v in values], dtype=object)

    def dates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ISO 8601 dates/datetimes as UTC-naive midnights (``datetime64[ns]``, NaT where
        blank or refused), the unparsable mask, and the mask of real dates outside
        ``MIN_DATE``..``MAX_DATE``. Time zones are honoured (converted to UTC) before the
        date is taken."""
        n = len(self.blank)
        none = np.zeros(n, dtype=bool)
        if self.absent or self.blank.all():
            return np.full(n, _NAT, dtype=np.int64).view("datetime64[ns]"), none, none
        if self.arrow is not None and _is_instant(self.arrow.type):
            return _arrow_instants(self.arrow, self.blank, floor_to_date=True)
        if self.typed is None:
            plain = _plain_dates(self.text, self.blank)
            if plain is not None:
                return plain, none, none
        source = self.typed if self.typed is not None else self.series()
        return _reference_dates(source, self.blank)

    def timestamps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`dates` keeping the time of day (UTC-naive ``datetime64[ns]``)."""
        n = len(self.blank)
        none = np.zeros(n, dtype=bool)
        if self.absent or self.blank.all():
            return np.full(n, _NAT, dtype=np.int64).view("datetime64[ns]"), none, none
        if self.arrow is not None and _is_instant(self.arrow.type):
            return _arrow_instants(self.arrow, self.blank, floor_to_date=False)
        if self.typed is None:
            plain = _plain_timestamps(self.text, self.blank)
            if plain is not None:
                return plain, none, none
        source = self.typed if self.typed is not None else self.series()
        return _reference_dates(source, self.blank, floor_to_date=False)

    def numbers(self) -> tuple[np.ndarray, np.ndarray]:
        """Floats, and the mask of present cells that are not finite numbers."""
        n = len(self.blank)
        if self.blank.all():
            return np.full(n, np.nan), np.zeros(n, dtype=bool)
        if self.arrow is not None and not _is_instant(self.arrow.type):
            values = pc.cast(self.arrow, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
            values = np.where(self.blank, np.nan, values)
            return values, ~np.isfinite(values) & ~self.blank
        if self.typed is None:
            plain = _plain_numbers(self.text, self.blank)
            if plain is not None:
                return plain, np.zeros(n, dtype=bool)
            text = self.series()
        else:
            text = _string_series(self.text)
        parsed = pd.to_numeric(text.where(~self.blank), errors="coerce").astype("float64")
        bad = np.asarray(parsed.isna(), dtype=bool) | ~np.isfinite(parsed.fillna(0.0))
        return parsed.to_numpy(), bad & ~self.blank


_UNITS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": _DAY_NS}


def _is_instant(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind)


def _typed(raw: pa.Array) -> _Column | None:
    """A column of Arrow timestamps, dates, integers or float64 (a typed Parquet file), read
    from its values with no text made; None for other types (the reference path, via
    pandas, decides). Same values, blanks and reasons as the reference: a timestamp is its
    UTC instant, NaN is missing; the text of a cell is made only for a message."""
    kind = raw.type
    numeric = pa.types.is_integer(kind) or pa.types.is_float64(kind)
    if not (_is_instant(kind) or numeric):
        return None
    blank = ~raw.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_float64(kind):
        blank |= pc.fill_null(pc.is_nan(raw), False).to_numpy(zero_copy_only=False)

    return _Column(lambda: _text_of_values(raw.to_pandas()), blank, arrow=raw)


def _text_of_values(values: pd.Series) -> pa.Array:
    """Typed cells as the reference writes them (pandas' ``string`` of each), null where
    missing."""
    cells = values.astype("string").to_numpy(dtype=object, na_value=None)
    return pa.array(cells, type=pa.string())


def _arrow_instants(
    raw: pa.Array, blank: np.ndarray, *, floor_to_date: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`_Column.dates` (``floor_to_date``) or :meth:`_Column.timestamps` of Arrow
    timestamps (their UTC instants) or dates, checked against the supported range in their
    own unit before any conversion to nanoseconds."""
    kind = raw.type
    if pa.types.is_date32(kind):
        per_day, values = 1, raw.cast(pa.int32()).cast(pa.int64())
    elif pa.types.is_date64(kind):
        per_day, values = _UNITS_PER_DAY["ms"], raw.cast(pa.int64())
    else:
        per_day, values = _UNITS_PER_DAY[kind.unit], raw.cast(pa.int64())
    number = pc.fill_null(values, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    days = np.floor_divide(number, per_day)
    outside = ~blank & ((days < _MIN_DAY) | (days > _MAX_DAY))
    if floor_to_date or pa.types.is_date(kind):  # a date is its midnight
        ns = days * _DAY_NS
    else:
        ns = number * (_DAY_NS // per_day)
    ns[blank | outside] = _NAT
    return ns.view("datetime64[ns]"), np.zeros(len(ns), dtype=bool), outside


def strip_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Text with white space stripped from both ends, as ``str.strip`` of a pandas
    ``string`` column does (Arrow's ``utf8_trim_whitespace``), as a plain string array.

    Skipped when no cell starts or ends with a byte that could belong to white space (a
    control or space character, or any non-ASCII byte): then stripping changes nothing."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not pa.types.is_string(values.type):  # large_string (pandas' storage), views
        values = values.cast(pa.string())
    data, starts, ends = _string_bytes(values)
    filled = ends > starts
    edges = np.concatenate([data[starts[filled]], data[ends[filled] - 1]])
    if len(edges) and ((edges <= 0x20) | (edges >= 0x80)).any():
        return pc.utf8_trim_whitespace(values)
    return values


def _present_lengths(text: pa.Array, blank: np.ndarray) -> np.ndarray:
    _, starts, ends = _string_bytes(text)
    return (ends - starts)[~blank]


def _without_blanks(text: pa.Array, blank: np.ndarray) -> pa.Array:
    """``text`` with empty cells as nulls (blank = null or empty after stripping)."""
    if int(blank.sum()) == text.null_count:
        return text
    return pc.if_else(pa.array(blank), pa.scalar(None, pa.string()), text)


def _plain_dates(text: pa.Array, blank: np.ndarray) -> np.ndarray | None:
    """``datetime64[ns]`` of a column whose present cells are all ``YYYY-MM-DD`` dates in
    the supported range, else None (the reference parser decides)."""
    if not (_present_lengths(text, blank) == 10).all():
        return None
    try:
        days = pc.cast(_without_blanks(text, blank), pa.date32())
    except pa.ArrowException:
        return None
    number = np.frombuffer(days.buffers()[1], dtype=np.int32)[days.offset : days.offset + len(days)]
    present = number[~blank]  # (a null's slot holds any value: masked here and below)
    if len(present) and (present.min() < _MIN_DAY or present.max() > _MAX_DAY):
        return None
    ns = number.astype(np.int64) * _DAY_NS
    ns[blank] = _NAT
    return ns.view("datetime64[ns]")


def _plain_timestamps(text: pa.Array, blank: np.ndarray) -> np.ndarray | None:
    """``datetime64[ns]`` (UTC-naive) of a column whose present cells Arrow reads as ISO 8601
    timestamps, all without a zone offset or all with one, within the supported range; else
    None (the reference parser decides, and explains the failures)."""
    present = _without_blanks(text, blank)
    parsed = None
    for kind in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):
        try:
            parsed = pc.cast(present, kind)
            break
        except pa.ArrowException:
            continue
    if parsed is None:
        return None
    ns = pc.fill_null(parsed.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False)
    days = np.floor_divide(ns[~blank], _DAY_NS)
    if len(days) and (days.min() < _MIN_DAY or days.max() > _MAX_DAY):
        return None
    return ns.view("datetime64[ns]")


def _plain_numbers(text: pa.Array, blank: np.ndarray) -> np.ndarray | None:
    """float64 of a column whose present cells are plain decimals (ASCII digits and points
    only, at most :data:`_PLAIN_NUMBER_BYTES` bytes, so at most 15 digits), else None.

    Such cells either parse alike everywhere (Arrow and pandas both round one exact
    integer divided by one exact power of ten) or fail Arrow's cast ("1.2.3"), and then the
    reference parser decides. Checked on the column's bytes rather than per cell."""
    data, starts, ends = _string_bytes(text)
    lengths = (ends - starts)[~blank]
    if not len(lengths) or lengths.max() > _PLAIN_NUMBER_BYTES:
        return None
    if not _DECIMAL_BYTES[data[int(starts[0]) : int(ends[-1])]].all():
        return None
    try:
        numbers = pc.cast(_without_blanks(text, blank), pa.float64())
    except pa.ArrowException:
        return None
    return numbers.to_numpy(zero_copy_only=False)


_DECIMAL_BYTES = np.zeros(256, dtype=bool)
_DECIMAL_BYTES[[*range(ord("0"), ord("9") + 1), ord(".")]] = True


def _string_bytes(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bytes of a string array and where each cell starts and ends in them."""
    assert pa.types.is_string(text.type)  # 32-bit offsets
    _, offsets_buffer, data_buffer = text.buffers()
    if offsets_buffer is None:  # no cells, or nothing but nulls
        none = np.zeros(len(text), dtype=np.int64)
        return np.zeros(0, dtype=np.uint8), none, none
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[
        text.offset : text.offset + len(text) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(0, dtype=np.uint8)
    )
    return data, offsets[:-1].astype(np.int64), offsets[1:].astype(np.int64)


def _reference_dates(
    source: pd.Series, blank: np.ndarray, *, floor_to_date: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pandas parse of a whole column (``source``: stripped text or typed values), as
    midnights unless ``floor_to_date`` is False."""
    if pd.api.types.is_datetime64_any_dtype(source):
        parsed = pd.to_datetime(source, errors="coerce", utc=True)
    else:
        parsed = pd.to_datetime(source.where(~blank), errors="coerce", utc=True, format="ISO8601")
    # pandas may parse to a unit coarser than ns that holds years past 2262: the range
    # is checked before the conversion to ns, which would overflow.
    parsed = parsed.dt.tz_localize(None)
    if floor_to_date:
        parsed = parsed.dt.floor("D")
    unparsable = np.array(parsed.isna(), dtype=bool) & ~blank
    low, high = pd.Timestamp(MIN_DATE), pd.Timestamp(MAX_DATE) + pd.Timedelta(days=1)
    outside = np.array(parsed.notna() & ((parsed < low) | (parsed >= high)), dtype=bool)
    if unparsable.any():  # pandas of ns resolution: real dates it cannot hold
        outside |= _iso_dates_mask(source.astype("string"), unparsable)
        unparsable &= ~outside
    parsed = parsed.where(~outside).astype("datetime64[ns]")
    return parsed.to_numpy(), unparsable, outside


def _iso_dates_mask(text: pd.Series, candidates: np.ndarray) -> np.ndarray:
    """Which ``candidates`` cells start with a valid ``YYYY-MM-DD`` date (few: a loop)."""
    mask = np.zeros(len(text), dtype=bool)
    for position in np.flatnonzero(candidates):
        value = str(text.iloc[position]).strip()
        try:
            date.fromisoformat(value[:10])
        except ValueError:
            continue
        mask[position] = len(value) == 10 or value[10] in "T "
    return mask


def _require_columns(names: Sequence[str], required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in names]
    if missing:
        raise SchemaError(
            f"{what} is missing required column(s): {', '.join(missing)}"
            f" (found: {', '.join(map(str, names)) or 'none'})"
        )


def _first_seen(text: pa.Array, blank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row: whether its (non-blank) value appeared on an earlier row, and the
    position of that value's first row. Arrow numbers dictionary entries in order of first
    appearance, so a row is a first sighting exactly when its index exceeds all before it."""
    index = pc.fill_null(pc.dictionary_encode(text).indices, -1).to_numpy(zero_copy_only=False)
    if len(index) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    before = np.maximum.accumulate(np.concatenate([[-1], index[:-1]]))
    first = index > before
    first_row = np.flatnonzero(first)  # entry k of the dictionary first appears here
    return ~first & ~blank, first_row[np.maximum(index, 0)]


@dataclass
class _Checked:
    """Every row's validated columns (full length), its line and the first failures."""

    columns: dict[str, Any]
    line: np.ndarray
    errors: _Collector
    ids: _Column


def _check(
    cells: dict[str, _Column],
    *,
    line: np.ndarray,
    required: Sequence[str],
    as_of: date | None,
    open_orders: bool,
    ids_distinct: bool = False,
) -> _Checked:
    """Apply the rules to every row; the first failure per row is kept, in rule order."""
    n = len(line)
    errors = _Collector(n)
    out: dict[str, Any] = {}

    # order_id: required, unique within the input.
    ids = cells["order_id"]
    errors.add(ids.blank, "order_id", "missing required value")
    if ids_distinct:  # the caller checked already: no search needed
        duplicate, first_row = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
    else:
        duplicate, first_row = _first_seen(ids.text, ids.blank)
    errors.add(
        duplicate,
        "order_id",
        lambda rows: np.array(
            [f"duplicate order_id (first seen on line {n})" for n in line[first_row[rows]]],
            dtype=object,
        ),
    )
    out["order_id"] = ids.text

    # destination_country: ISO 3166-1 alpha-2, case-insensitive.
    country_cells = cells["destination_country"]
    country = pc.utf8_upper(country_cells.text)
    errors.add(country_cells.blank, "destination_country", "missing required value")
    known = pc.fill_null(pc.is_in(country, value_set=_iso_array()), False)
    unknown = ~known.to_numpy(zero_copy_only=False) & ~country_cells.blank
    errors.add(
        unknown,
        "destination_country",
        lambda rows: np.array(
            [
                f"'{code}' is not an ISO 3166-1 alpha-2 country code"
                for code in country.take(pa.array(rows, type=pa.int64())).to_pylist()
            ],
            dtype=object,
        ),
    )
    out["destination_country"] = country

    method = cells["shipping_method"]
    out["shipping_method"] = pc.if_else(
        pa.array(method.blank), UNKNOWN_METHOD, pc.utf8_lower(method.text)
    )
    region = cells["destination_region"]
    out["destination_region"] = pc.if_else(
        pa.array(region.blank), pa.scalar(None, pa.string()), pc.utf8_upper(region.text)
    )

    date_columns = ["shipped_at", "deadline", "delivered_at", "ordered_at"]
    if open_orders:
        date_columns.append("dispute_opened_at")
    for col in date_columns:
        cell = cells[col]
        parsed, unparsable, outside = cell.dates()
        if col in required:
            errors.add(cell.blank, col, "missing required value")
        errors.add(unparsable, col, cell.message(" is not an ISO 8601 date"))
        errors.add(outside, col, cell.message(f" is out of {date_range_text()}"))
        out[col] = parsed

    shipped, deadline = out["shipped_at"], out["deadline"]
    errors.add(deadline < shipped, "deadline", "deadline before shipped_at")
    errors.add(out["delivered_at"] < shipped, "delivered_at", "delivered_at before shipped_at")
    errors.add(out["ordered_at"] > shipped, "ordered_at", "ordered_at after shipped_at")
    if as_of is not None:
        errors.add(
            shipped > np.datetime64(as_of, "ns"),
            "shipped_at",
            f"as_of ({as_of.isoformat()}) before shipped_at",
        )

    for col in ("weight_g", "declared_value_usd"):
        cell = cells[col]
        parsed, bad = cell.numbers()
        errors.add(bad, col, cell.message(" is not a number"))
        errors.add(parsed < 0, col, "negative value")
        out[col] = parsed

    if open_orders:
        extensions = cells["extensions"]
        parsed, bad = extensions.numbers()
        with np.errstate(invalid="ignore"):
            not_int = ((parsed % 1) != 0) & ~np.isnan(parsed) & ~bad
        errors.add(
            bad | not_int,
            "extensions",
            extensions.message(" is not a whole number"),
        )
        errors.add(parsed < 0, "extensions", "negative extensions")
        # Rejected cells (inf included) become 0 so the cast to int64 cannot fail.
        whole = np.where(bad | np.isnan(parsed), 0.0, parsed)
        with np.errstate(invalid="ignore"):
            out["extensions"] = np.maximum(whole, 0.0).astype(np.int64)
        errors.add(
            out["dispute_opened_at"] < shipped,
            "dispute_opened_at",
            "dispute_opened_at before shipped_at",
        )
    return _Checked(out, line, errors, ids)


@lru_cache(maxsize=1)
def _iso_array() -> pa.Array:
    return pa.array(sorted(iso_country_codes()), type=pa.string())


def _lines(n: int, lines: Sequence[int] | np.ndarray | None) -> np.ndarray:
    if lines is None:
        return np.arange(FIRST_DATA_LINE, FIRST_DATA_LINE + n, dtype=np.int64)
    return np.asarray(lines, dtype=np.int64)


def _reject_order(checked: _Checked) -> np.ndarray:
    """Positions of the failed rows, by line (stable)."""
    failed = np.flatnonzero(checked.errors.failed)
    return failed[np.argsort(checked.line[failed], kind="stable")]


def _validate(
    frame: pd.DataFrame,
    *,
    columns: Sequence[str],
    required: Sequence[str],
    what: str,
    lines: Sequence[int] | np.ndarray | None,
    as_of: date | None,
    open_orders: bool,
) -> Validated:
    _require_columns(list(frame.columns), required, what)
    n = len(frame)
    cells = {
        c: _Column.from_series(frame[c]) if c in frame.columns else _Column.missing(n)
        for c in columns
    }
    checked = _check(
        cells, line=_lines(n, lines), required=required, as_of=as_of, open_orders=open_orders
    )
    keep = ~checked.errors.failed
    valid: dict[str, Any] = {"line": checked.line[keep]}
    for name, values in checked.columns.items():
        if isinstance(values, pa.Array):
            kept = values.filter(pa.array(keep)).to_numpy(zero_copy_only=False)
            if name == "destination_region":
                kept[pd.isna(kept)] = pd.NA
            valid[name] = pd.Series(kept, dtype=object, copy=False)
        else:
            valid[name] = values[keep]
    order = _reject_order(checked)
    ids = checked.ids.text.take(pa.array(order, type=pa.int64())).to_numpy(zero_copy_only=False)
    ids[checked.ids.blank[order]] = pd.NA
    rejects = pd.DataFrame(
        {
            "line": checked.line[order],
            "order_id": ids.astype(object),
            "column": checked.errors.column[order],
            "reason": checked.errors.reason[order],
        }
    )
    return Validated(valid=pd.DataFrame(valid), rejects=rejects)


def validate_history(
    frame: pd.DataFrame, *, lines: Sequence[int] | np.ndarray | None = None
) -> Validated:
    """Validate a shipment-history frame (see README, "Shipment history")."""
    return _validate(
        frame,
        columns=HISTORY_COLUMNS,
        required=HISTORY_REQUIRED,
        what="shipment history",
        lines=lines,
        as_of=None,
        open_orders=False,
    )


_OPEN_REQUIRED = OPEN_ORDER_REQUIRED[:2] + OPEN_ORDER_REQUIRED[3:]  # shipping_method may be missing


def validate_open_orders(
    frame: pd.DataFrame,
    *,
    as_of: date | None = None,
    lines: Sequence[int] | np.ndarray | None = None,
) -> Validated:
    """Validate an open-orders frame; with ``as_of``, orders shipped after it are rejected."""
    if as_of is not None:
        check_as_of(as_of)
    return _validate(
        frame,
        columns=OPEN_ORDER_COLUMNS,
        required=_OPEN_REQUIRED,
        what="open orders",
        lines=lines,
        as_of=as_of,
        open_orders=True,
    )


def validate_open_orders_table(
    table: pa.Table,
    *,
    as_of: date | None = None,
    lines: Sequence[int] | np.ndarray | None = None,
    ids_distinct: bool = False,
) -> ValidatedColumns:
    """:func:`validate_open_orders` of an Arrow table (text or typed columns), same rules,
    same reasons; the valid rows come back as columns (see :class:`ValidatedColumns`).

    ``ids_distinct``: the caller has found that no two rows share a (stripped, non-blank)
    order_id, as the batch engine does with their hashes; the search is then skipped."""
    if as_of is not None:
        check_as_of(as_of)
    _require_columns(table.column_names, _OPEN_REQUIRED, "open orders")
    n = table.num_rows
    cells = {
        c: _Column.from_arrow(table.column(c)) if c in table.column_names else _Column.missing(n)
        for c in OPEN_ORDER_COLUMNS
    }
    checked = _check(
        cells,
        line=_lines(n, lines),
        required=_OPEN_REQUIRED,
        as_of=as_of,
        open_orders=True,
        ids_distinct=ids_distinct,
    )
    keep = ~checked.errors.failed
    if keep.all():
        valid = {"line": checked.line, **checked.columns}
    else:
        mask = pa.array(keep)
        valid = {"line": checked.line[keep]}
        for name, values in checked.columns.items():
            valid[name] = values.filter(mask) if isinstance(values, pa.Array) else values[keep]
    order = _reject_order(checked)
    ids = checked.ids.text.take(pa.array(order, type=pa.int64()))
    rejects = pa.table(
        {
            "line": pa.array(checked.line[order], type=pa.int64()),
            "order_id": pc.if_else(
                pa.array(checked.ids.blank[order], type=pa.bool_()),
                pa.scalar(None, pa.string()),
                ids,
            ),
            "column": pa.array(checked.errors.column[order], type=pa.string()),
            "reason": pa.array(checked.errors.reason[order], type=pa.string()),
        }
    )
    return ValidatedColumns(valid=valid, rejects=rejects)
