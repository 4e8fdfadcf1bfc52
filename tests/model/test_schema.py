"""Row-level validation of open orders and history (model/schema.py).

Frames here look like ``read_table`` output for a CSV: every cell is text, empty cells are
missing. Line numbers are 1-based file lines: the header is line 1, the first row line 2.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from model.errors import SchemaError
from model.schema import REJECT_COLUMNS, validate_history, validate_open_orders

AS_OF = date(2026, 11, 1)
GOOD = {
    "order_id": "A",
    "destination_country": "DE",
    "shipping_method": "aliexpress_standard",
    "shipped_at": "2026-10-01",
    "deadline": "2026-11-20",
}


def csv_frame(rows: list[dict[str, str]], columns: list[str] | None = None) -> pd.DataFrame:
    """A frame as read from CSV: text cells, ``NaN`` for empty ones."""
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame = frame.where(frame.notna() & (frame != ""), np.nan)
    return frame.astype("str").where(frame.notna())


def order(order_id: str, **changes: str) -> dict[str, str]:
    return {**GOOD, "order_id": order_id, **changes}


BAD_ORDERS: list[tuple[dict[str, str], str, str]] = [
    # (row, rejected column, exact reason)
    (order("", destination_country="BR"), "order_id", "missing required value"),
    (
        order("B3", destination_country="ZZ"),
        "destination_country",
        "'ZZ' is not an ISO 3166-1 alpha-2 country code",
    ),
    (order("B4", shipped_at="2026-13-01"), "shipped_at", "'2026-13-01' is not an ISO 8601 date"),
    (order("B5", deadline="20/11/2026"), "deadline", "'20/11/2026' is not an ISO 8601 date"),
    (order("B6", deadline="2026-09-20"), "deadline", "deadline before shipped_at"),
    (order("B7", delivered_at="2026-09-01"), "delivered_at", "delivered_at before shipped_at"),
    (order("A1"), "order_id", "duplicate order_id (first seen on line 2)"),
    (order("B9", extensions="-1"), "extensions", "negative extensions"),
    (order("B10", extensions="1.5"), "extensions", "'1.5' is not a whole number"),
    (order("B11", extensions="two"), "extensions", "'two' is not a whole number"),
    (order("B11i", extensions="inf"), "extensions", "'inf' is not a whole number"),
    (order("B12", weight_g="heavy"), "weight_g", "'heavy' is not a number"),
    (order("B13", destination_country=" "), "destination_country", "missing required value"),
    (order("B14", shipped_at=""), "shipped_at", "missing required value"),
    (
        order("B15", shipped_at="2026-11-05", deadline="2026-12-20"),
        "shipped_at",
        "as_of (2026-11-01) before shipped_at",
    ),
    (
        order("B16", dispute_opened_at="2026-09-01"),
        "dispute_opened_at",
        "dispute_opened_at before shipped_at",
    ),
    (order("B17", declared_value_usd="-3"), "declared_value_usd", "negative value"),
    # Real dates outside 1900..2199, inside and beyond pandas' nanosecond range (2262).
    (
        order("B18", shipped_at="1899-12-31"),
        "shipped_at",
        "'1899-12-31' is out of the supported range 1900-01-01 to 2199-12-31",
    ),
    (
        order("B19", deadline="2200-01-01"),
        "deadline",
        "'2200-01-01' is out of the supported range 1900-01-01 to 2199-12-31",
    ),
    (
        order("B20", deadline="2300-01-01T10:00:00"),
        "deadline",
        "'2300-01-01T10:00:00' is out of the supported range 1900-01-01 to 2199-12-31",
    ),
    (
        order("B21", delivered_at="1600-03-01"),
        "delivered_at",
        "'1600-03-01' is out of the supported range 1900-01-01 to 2199-12-31",
    ),
]
OPEN_COLUMNS = [
    "order_id",
    "destination_country",
    "shipping_method",
    "shipped_at",
    "deadline",
    "delivered_at",
    "extensions",
    "dispute_opened_at",
    "weight_g",
    "declared_value_usd",
]


def test_every_bad_row_is_reported_with_its_line_and_reason() -> None:
    good_first = order("A1", destination_country="br")
    rows = [good_first] + [row for row, _, _ in BAD_ORDERS] + [order("A2", extensions="2")]
    result = validate_open_orders(csv_frame(rows, OPEN_COLUMNS), as_of=AS_OF)

    assert list(result.rejects.columns) == list(REJECT_COLUMNS)
    expected = [
        (3 + i, row["order_id"] or None, column, reason)
        for i, (row, column, reason) in enumerate(BAD_ORDERS)
    ]
    got = [
        (int(line), None if pd.isna(order_id) else order_id, column, reason)
        for line, order_id, column, reason in result.rejects.itertuples(index=False)
    ]
    assert got == expected
    # Valid rows keep input order and their own line numbers; nothing silently dropped.
    assert result.valid["order_id"].tolist() == ["A1", "A2"]
    assert result.valid["line"].tolist() == [2, 3 + len(BAD_ORDERS)]
    assert result.n_rows == len(rows)


def test_country_code_is_case_insensitive_and_normalised() -> None:
    result = validate_open_orders(
        csv_frame([order("a", destination_country="br"), order("b", destination_country=" gb ")])
    )
    assert result.rejects.empty
    assert result.valid["destination_country"].tolist() == ["BR", "GB"]


def test_duplicate_message_names_the_first_line_of_that_id() -> None:
    rows = [order("X"), order("Y"), order("Z"), order("Y"), order("X"), order("Y")]
    rejects = validate_open_orders(csv_frame(rows)).rejects
    assert rejects["line"].tolist() == [5, 6, 7]
    assert rejects["reason"].tolist() == [
        "duplicate order_id (first seen on line 3)",
        "duplicate order_id (first seen on line 2)",
        "duplicate order_id (first seen on line 3)",
    ]


def test_given_line_numbers_are_used_for_chunks() -> None:
    rows = [order("A"), order("B", deadline="nope"), order("C")]
    result = validate_open_orders(csv_frame(rows), lines=[1001, 1002, 1003])
    assert result.rejects["line"].tolist() == [1002]
    assert result.valid["line"].tolist() == [1001, 1003]


def test_missing_required_column_is_a_schema_error_naming_it() -> None:
    frame = csv_frame([order("A")]).drop(columns=["shipped_at", "deadline"])
    with pytest.raises(SchemaError) as raised:
        validate_open_orders(frame)
    assert str(raised.value) == (
        "open orders is missing required column(s): shipped_at, deadline"
        " (found: order_id, destination_country, shipping_method)"
    )


def test_history_missing_column_message() -> None:
    frame = csv_frame([order("A")]).drop(columns=["destination_country"])
    with pytest.raises(SchemaError) as raised:
        validate_history(frame)
    assert str(raised.value) == (
        "shipment history is missing required column(s): destination_country"
        " (found: order_id, shipping_method, shipped_at, deadline)"
    )


def test_iso_datetimes_with_time_zones_become_utc_dates() -> None:
    rows = [
        order("tz1", shipped_at="2026-10-01T23:30:00-05:00", deadline="2026-11-20T01:00:00+02:00"),
        order("tz2", shipped_at="2026-10-01T10:00:00Z", deadline="2026-11-20 12:00:00"),
        order("tz3", delivered_at="2026-10-20T08:15:00+09:00"),
    ]
    result = validate_open_orders(csv_frame(rows, OPEN_COLUMNS))
    assert result.rejects.empty
    valid = result.valid.set_index("order_id")
    assert valid.loc["tz1", "shipped_at"] == pd.Timestamp("2026-10-02")
    assert valid.loc["tz1", "deadline"] == pd.Timestamp("2026-11-19")
    assert valid.loc["tz2", "shipped_at"] == pd.Timestamp("2026-10-01")
    assert valid.loc["tz2", "deadline"] == pd.Timestamp("2026-11-20")
    assert valid.loc["tz3", "delivered_at"] == pd.Timestamp("2026-10-19")


def test_optional_columns_get_defaults() -> None:
    frame = csv_frame([order("A", shipping_method="")])
    valid = validate_open_orders(frame).valid
    assert valid.loc[0, "shipping_method"] == "unknown"
    assert valid.loc[0, "extensions"] == 0
    assert pd.isna(valid.loc[0, "delivered_at"])
    assert pd.isna(valid.loc[0, "dispute_opened_at"])


def test_history_rejects_plus_valid_equal_input(small_history: pd.DataFrame) -> None:
    raw = small_history.head(300).copy()
    raw = raw.astype({c: "object" for c in raw.columns})
    raw.loc[10, "destination_country"] = "XX"
    raw.loc[20, "shipped_at"] = "yesterday"
    raw.loc[30, "delivered_at"] = raw.loc[30, "shipped_at"] - pd.Timedelta(days=3)
    raw.loc[40, "order_id"] = raw.loc[5, "order_id"]
    raw.loc[50, "weight_g"] = "1,5 kg"
    result = validate_history(raw)
    assert result.rejects["line"].tolist() == [12, 22, 32, 42, 52]
    assert result.rejects["reason"].tolist() == [
        "'XX' is not an ISO 3166-1 alpha-2 country code",
        "'yesterday' is not an ISO 8601 date",
        "delivered_at before shipped_at",
        "duplicate order_id (first seen on line 7)",
        "'1,5 kg' is not a number",
    ]
    assert len(result.valid) + len(result.rejects) == len(raw)
    assert not set(result.valid["line"]) & set(result.rejects["line"])


def test_generated_typed_history_is_all_valid(small_history: pd.DataFrame) -> None:
    result = validate_history(small_history)
    assert result.rejects.empty
    assert len(result.valid) == len(small_history)
    assert result.valid["shipped_at"].dtype == "datetime64[ns]"


def test_as_of_outside_the_date_range_is_refused_whole() -> None:
    frame = csv_frame([order("A1")], OPEN_COLUMNS)
    with pytest.raises(SchemaError) as caught:
        validate_open_orders(frame, as_of=date(2262, 5, 1))
    assert str(caught.value) == (
        "as_of 2262-05-01 is out of the supported range 1900-01-01 to 2199-12-31"
    )
