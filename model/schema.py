"""Column contracts and row-level validation of shipment frames.

Both the shipment history and open orders arrive as text (CSV cells, JSON strings). The
validators here parse a frame of raw values column by column, vectorised, and return the
rows that parse plus one reject record per failing row (its 1-based input line, order_id,
column and reason). Every bad row is reported, never only the first; a missing required
column is a :class:`~model.errors.SchemaError` because no row can be used then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd
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
    "check_as_of",
    "date_range_text",
    "iso_country_codes",
    "validate_history",
    "validate_open_orders",
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


class _Collector:
    """Collects the first failing column and reason per row (rows keep the first failure)."""

    def __init__(self, n: int) -> None:
        self.column = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)

    def add(self, mask: np.ndarray | pd.Series, column: str, reason: str | pd.Series) -> None:
        mask = np.asarray(mask, dtype=bool) & pd.isna(self.column)
        if not mask.any():
            return
        self.column[mask] = column
        if isinstance(reason, pd.Series):
            self.reason[mask] = reason.to_numpy(dtype=object)[mask]
        else:
            self.reason[mask] = reason

    @property
    def failed(self) -> np.ndarray:
        return ~pd.isna(self.column)


class _Column:
    """One input column as stripped text plus its blank mask, computed once.

    A column absent from the input is all blank and costs no string work.
    """

    def __init__(self, frame: pd.DataFrame, name: str) -> None:
        n = len(frame)
        self.raw = frame[name].reset_index(drop=True) if name in frame.columns else None
        if self.raw is None:
            self.text = pd.Series(pd.NA, index=range(n), dtype="string")
            self.blank = np.ones(n, dtype=bool)
        elif pd.api.types.is_datetime64_any_dtype(self.raw) or pd.api.types.is_numeric_dtype(
            self.raw
        ):
            self.text = self.raw.astype("string")
            self.blank = np.asarray(self.raw.isna(), dtype=bool)
        else:
            self.text = self.raw.astype("string").str.strip()
            self.blank = np.asarray(self.text.isna() | (self.text == ""), dtype=bool)

    def quoted(self) -> pd.Series:
        """Each cell as ``'value'`` for error messages."""
        return "'" + self.text.fillna("").astype(str) + "'"

    def dates(self) -> tuple[pd.Series, np.ndarray, np.ndarray]:
        """ISO 8601 dates/datetimes as UTC-naive midnight timestamps (``datetime64[ns]``,
        NaT where blank or refused), the unparsable mask, and the mask of real dates outside
        ``MIN_DATE``..``MAX_DATE``.

        Time zones are honoured (converted to UTC) before the date is taken.
        """
        n = len(self.blank)
        if self.raw is None or self.blank.all():
            none = np.zeros(n, bool)
            return pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]"), none, none
        if pd.api.types.is_datetime64_any_dtype(self.raw):
            parsed = pd.to_datetime(self.raw, errors="coerce", utc=True)
        else:
            parsed = pd.to_datetime(
                self.text.where(~self.blank), errors="coerce", utc=True, format="ISO8601"
            )
        # pandas may parse to a unit coarser than ns that holds years past 2262: the range
        # is checked before the conversion to ns, which would overflow.
        parsed = parsed.dt.tz_localize(None).dt.floor("D")
        unparsable = np.array(parsed.isna(), dtype=bool) & ~self.blank
        low, high = pd.Timestamp(MIN_DATE), pd.Timestamp(MAX_DATE)
        outside = np.array(parsed.notna() & ((parsed < low) | (parsed > high)), dtype=bool)
        if unparsable.any():  # pandas of ns resolution: real dates it cannot hold
            outside |= _iso_dates_mask(self.text, unparsable)
            unparsable &= ~outside
        parsed = parsed.where(~outside).astype("datetime64[ns]")
        return parsed, unparsable, outside

    def numbers(self) -> tuple[pd.Series, np.ndarray]:
        """Floats, and the mask of present cells that are not finite numbers."""
        n = len(self.blank)
        if self.blank.all():
            return pd.Series(np.nan, index=range(n), dtype="float64"), np.zeros(n, bool)
        parsed = pd.to_numeric(self.text.where(~self.blank), errors="coerce").astype("float64")
        bad = np.asarray(parsed.isna(), dtype=bool) | ~np.isfinite(parsed.fillna(0.0))
        return parsed, bad & ~self.blank


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


def _require_columns(frame: pd.DataFrame, required: Sequence[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{what} is missing required column(s): {', '.join(missing)}"
            f" (found: {', '.join(map(str, frame.columns)) or 'none'})"
        )


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
    _require_columns(frame, required, what)
    n = len(frame)
    line = (
        np.arange(FIRST_DATA_LINE, FIRST_DATA_LINE + n, dtype=np.int64)
        if lines is None
        else np.asarray(lines, dtype=np.int64)
    )
    cells = {c: _Column(frame, c) for c in columns}
    errors = _Collector(n)
    out: dict[str, pd.Series] = {}

    # order_id: required, unique within the input.
    ids = cells["order_id"]
    errors.add(ids.blank, "order_id", "missing required value")
    dup = np.asarray(ids.text.duplicated(keep="first"), dtype=bool) & ~ids.blank
    if dup.any():
        first_line = pd.Series(line).groupby(ids.text.fillna("").to_numpy()).transform("first")
        reason = "duplicate order_id (first seen on line " + first_line.astype(str) + ")"
        errors.add(dup, "order_id", reason)
    out["order_id"] = ids.text.astype(object)

    # destination_country: ISO 3166-1 alpha-2, case-insensitive.
    country_cells = cells["destination_country"]
    country = country_cells.text.str.upper()
    errors.add(country_cells.blank, "destination_country", "missing required value")
    unknown = ~np.asarray(country.isin(iso_country_codes()), dtype=bool) & ~country_cells.blank
    errors.add(
        unknown,
        "destination_country",
        "'" + country.fillna("").astype(str) + "' is not an ISO 3166-1 alpha-2 country code",
    )
    out["destination_country"] = country.astype(object)

    method = cells["shipping_method"]
    out["shipping_method"] = (
        method.text.str.lower().where(~method.blank, UNKNOWN_METHOD).astype(object)
    )
    region = cells["destination_region"]
    out["destination_region"] = region.text.str.upper().where(~region.blank, None).astype(object)

    date_columns = ["shipped_at", "deadline", "delivered_at", "ordered_at"]
    if open_orders:
        date_columns.append("dispute_opened_at")
    for col in date_columns:
        parsed, unparsable, outside = cells[col].dates()
        if col in required:
            errors.add(cells[col].blank, col, "missing required value")
        errors.add(unparsable, col, cells[col].quoted() + " is not an ISO 8601 date")
        errors.add(outside, col, cells[col].quoted() + f" is out of {date_range_text()}")
        out[col] = parsed

    shipped, deadline = out["shipped_at"], out["deadline"]
    errors.add(np.asarray(deadline < shipped, dtype=bool), "deadline", "deadline before shipped_at")
    errors.add(
        np.asarray(out["delivered_at"] < shipped, dtype=bool),
        "delivered_at",
        "delivered_at before shipped_at",
    )
    errors.add(
        np.asarray(out["ordered_at"] > shipped, dtype=bool),
        "ordered_at",
        "ordered_at after shipped_at",
    )
    if as_of is not None:
        errors.add(
            np.asarray(shipped > pd.Timestamp(as_of), dtype=bool),
            "shipped_at",
            f"as_of ({as_of.isoformat()}) before shipped_at",
        )

    for col in ("weight_g", "declared_value_usd"):
        parsed, bad = cells[col].numbers()
        errors.add(bad, col, cells[col].quoted() + " is not a number")
        errors.add(np.asarray(parsed < 0, dtype=bool), col, "negative value")
        out[col] = parsed

    if open_orders:
        extensions = cells["extensions"]
        parsed, bad = extensions.numbers()
        not_int = np.asarray(((parsed % 1) != 0) & parsed.notna(), dtype=bool) & ~bad
        errors.add(bad | not_int, "extensions", extensions.quoted() + " is not a whole number")
        errors.add(np.asarray(parsed < 0, dtype=bool), "extensions", "negative extensions")
        # Rejected cells (inf included) become 0 so the cast to int64 cannot fail.
        out["extensions"] = parsed.where(~bad, 0.0).fillna(0.0).clip(lower=0).astype("int64")
        errors.add(
            np.asarray(out["dispute_opened_at"] < shipped, dtype=bool),
            "dispute_opened_at",
            "dispute_opened_at before shipped_at",
        )

    failed = errors.failed
    result = pd.DataFrame(out)
    result.insert(0, "line", line)
    valid = result.loc[~failed].reset_index(drop=True)
    rejects = pd.DataFrame(
        {
            "line": line[failed],
            "order_id": ids.text.where(~ids.blank, None).to_numpy(dtype=object)[failed],
            "column": errors.column[failed],
            "reason": errors.reason[failed],
        }
    )
    return Validated(
        valid=valid, rejects=rejects.sort_values("line", kind="stable").reset_index(drop=True)
    )


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
        required=OPEN_ORDER_REQUIRED[:2] + OPEN_ORDER_REQUIRED[3:],
        what="open orders",
        lines=lines,
        as_of=as_of,
        open_orders=True,
    )
