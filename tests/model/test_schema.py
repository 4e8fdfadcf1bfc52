"""Row-level validation of open orders and history (model/schema.py).

Frames here look like ``read_table`` output for a CSV: every cell is text, empty cells are
missing. Line numbers are 1-based file lines: the header is line 1, the first row line 2.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model import schema
from model.errors import SchemaError
from model.schema import (
    REJECT_COLUMNS,
    validate_history,
    validate_open_orders,
    validate_open_orders_table,
)

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


# -- the fast paths (Arrow) and the reference parsers (pandas) agree ----------------------
DATE_CELLS = [
    "2026-10-01",
    "2026-09-15",
    "1900-01-01",
    "2199-12-31",
    "2024-02-29",
    "2026-02-30",
    "2026-13-01",
    "1899-12-31",
    "2200-01-01",
    "0000-01-01",
    "2300-05-05",
    "2026-1-05",
    " 2026-09-20 ",
    "2026-09-20T10:00:00+05:00",
    "2026-09-20 23:59:59",
    "20260920",
    "nan",
    "",
    "   ",
]
NUMBER_CELLS = [
    "0",
    "1",
    "2",
    "12.5",
    "198.0",
    "5.",
    ".5",
    "0.000",
    " 7 ",
    "1e3",
    "-1",
    "-0",
    "+4",
    "0x10",
    "1_000",
    "1.2.3",
    "1.5",
    "inf",
    "nan",
    "\uff11\uff12",
    "12345678901234567",
    "99999999999999999999",
    "",
]
cells = st.fixed_dictionaries(
    {
        "shipped_at": st.sampled_from(DATE_CELLS[:5] + DATE_CELLS[5:]),
        "deadline": st.sampled_from(DATE_CELLS),
        "delivered_at": st.sampled_from(DATE_CELLS),
        "extensions": st.sampled_from(NUMBER_CELLS),
        "weight_g": st.sampled_from(NUMBER_CELLS),
        "declared_value_usd": st.sampled_from(NUMBER_CELLS),
    }
)


def reference_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every date and number column goes through the pandas parsers."""
    monkeypatch.setattr(schema, "_plain_dates", lambda text, blank: None)
    monkeypatch.setattr(schema, "_plain_numbers", lambda text, blank: None)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(cells, min_size=1, max_size=12),
    plain=st.lists(st.sampled_from(["2026-10-01", "2026-09-15", "7", "12.5"]), max_size=3),
)
def test_fast_paths_give_the_reference_values_and_reasons(
    rows: list[dict[str, str]], plain: list[str]
) -> None:
    # Columns made of plain cells take the fast path; any other cell sends the whole column
    # to the reference parsers. Both must give the same frames, reasons and lines.
    frame = csv_frame([order(f"O{i}", **row) for i, row in enumerate(rows)], OPEN_COLUMNS)
    for k, value in enumerate(plain):  # some all-plain columns, so both paths are taken
        column = ["deadline", "weight_g", "declared_value_usd"][k]
        frame[column] = value if column != "deadline" else "2026-12-31"
    fast = validate_open_orders(frame, as_of=AS_OF)
    with pytest.MonkeyPatch.context() as patch:
        reference_only(patch)
        reference = validate_open_orders(frame, as_of=AS_OF)
    pd.testing.assert_frame_equal(fast.valid, reference.valid, check_exact=True)
    pd.testing.assert_frame_equal(fast.rejects, reference.rejects, check_exact=True)
    table = validate_open_orders_table(
        pa.Table.from_pandas(frame, preserve_index=False), as_of=AS_OF
    )
    assert table.rejects.to_pylist() == [
        {**row, "order_id": row["order_id"]} for row in reference.rejects.to_dict("records")
    ]
    assert table.valid["line"].tolist() == reference.valid["line"].tolist()
    for name in ("shipped_at", "deadline", "delivered_at", "extensions", "weight_g"):
        np.testing.assert_array_equal(table.valid[name], reference.valid[name].to_numpy())


def test_table_and_frame_validation_agree_on_every_bad_row() -> None:
    rows = [order("A1", destination_country="br")] + [row for row, _, _ in BAD_ORDERS]
    frame = csv_frame(
        [*rows, order("A2", extensions="2", destination_region=" sp ")],
        [*OPEN_COLUMNS, "destination_region"],
    )
    from_frame = validate_open_orders(frame, as_of=AS_OF)
    from_table = validate_open_orders_table(
        pa.Table.from_pandas(frame, preserve_index=False), as_of=AS_OF
    )
    assert from_table.rejects.column_names == list(REJECT_COLUMNS)
    assert [tuple(r.values()) for r in from_table.rejects.to_pylist()] == [
        (line, None if pd.isna(order_id) else order_id, column, reason)
        for line, order_id, column, reason in from_frame.rejects.itertuples(index=False)
    ]
    assert list(from_table.valid) == list(from_frame.valid.columns)
    for name, values in from_table.valid.items():
        expected = from_frame.valid[name]
        if isinstance(values, pa.Array):  # text: Arrow nulls where the frame holds NA
            assert values.to_pylist() == [None if pd.isna(v) else v for v in expected], name
        else:
            np.testing.assert_array_equal(values, expected.to_numpy(), err_msg=name)
            assert values.dtype == expected.dtype, name
    assert from_table.valid["destination_region"].to_pylist()[-1] == "SP"


# -- typed columns (a typed Parquet file): read from their values, as the reference reads them
DAY_MS = 86_400_000
edge_instants_ms = st.sampled_from(
    [
        -25_567 * DAY_MS,  # 1900-01-01, the first supported day
        -25_567 * DAY_MS - 1,  # a millisecond before it
        83_238 * DAY_MS + DAY_MS - 1,  # the last millisecond of 2199-12-31
        83_239 * DAY_MS,  # 2200-01-01
        -62_000 * DAY_MS,  # 1800
        120_000 * DAY_MS,  # 2298 (past what nanoseconds hold)
    ]
)


def instants_around(day: int) -> st.SearchStrategy[int]:
    return st.integers(-3 * DAY_MS, 60 * DAY_MS).map(lambda k: day * DAY_MS + k)


# Mostly plausible orders (a row keeps only its first failure), some edges and blanks.
shipped_ms = st.one_of(*[instants_around(20_300)] * 4, edge_instants_ms, st.none())
deadline_ms = st.one_of(*[instants_around(20_400)] * 4, edge_instants_ms, st.none())
delivered_ms = st.one_of(*[st.none()] * 3, instants_around(20_350), edge_instants_ms)
numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-5, 5).map(float),
    st.sampled_from([0.5, 1.5, 12.25, 1e17, math.nan, math.inf, -math.inf]),
)


def instants(values: list[int | None], unit: str, tz: str | None, as_date: bool) -> pa.Array:
    """Milliseconds since 1970 as Arrow dates or timestamps of ``unit`` (``ns`` cannot hold
    the years past 2262: those cells are left out)."""
    if as_date:
        days = [None if v is None else v // DAY_MS for v in values]
        return pa.array(days, type=pa.int32()).cast(pa.date32())
    scale = {"s": 1 / 1000, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    kept = [None if v is None or (unit == "ns" and abs(v) > 9 * 10**12) else v for v in values]
    ticks = [None if v is None else int(v * scale) for v in kept]
    return pa.array(ticks, type=pa.int64()).cast(pa.timestamp(unit, tz=tz))


def column_lists(n: int) -> st.SearchStrategy[dict[str, list[Any]]]:
    return st.fixed_dictionaries(
        {
            "shipped_at": st.lists(shipped_ms, min_size=n, max_size=n),
            "deadline": st.lists(deadline_ms, min_size=n, max_size=n),
            "delivered_at": st.lists(delivered_ms, min_size=n, max_size=n),
            "weight_g": st.lists(numbers, min_size=n, max_size=n),
            "extensions": st.lists(
                st.one_of(st.integers(0, 3).map(float), numbers), min_size=n, max_size=n
            ),
            "declared_value_usd": st.lists(
                st.one_of(st.none(), st.integers(-3, 2**62)), min_size=n, max_size=n
            ),
        }
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 12).flatmap(column_lists),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    tz=st.sampled_from([None, "UTC", "America/Sao_Paulo", "+09:30"]),
    deadline_as_date=st.booleans(),
    extensions_as_integers=st.booleans(),
)
def test_typed_columns_validate_as_the_reference_does(
    rows: dict[str, list[Any]],
    unit: str,
    tz: str | None,
    deadline_as_date: bool,
    extensions_as_integers: bool,
) -> None:
    """Arrow timestamps (any unit, with or without a zone), dates, integers and float64
    give the values, lines and reasons of the pandas reference path, never making text."""
    n = len(rows["shipped_at"])
    if extensions_as_integers:
        whole = [int(v) if v is not None and abs(v) < 2**62 else None for v in rows["extensions"]]
        extensions = pa.array(whole, type=pa.int64())
    else:
        extensions = pa.array(rows["extensions"], type=pa.float64())
    table = pa.table(
        {
            "order_id": pa.array([f"T{i}" for i in range(n)]),
            "destination_country": pa.array(["BR"] * n),
            "shipping_method": pa.array(["aliexpress_standard"] * n),
            "shipped_at": instants(rows["shipped_at"], unit, tz, as_date=False),
            "deadline": instants(rows["deadline"], unit, tz, as_date=deadline_as_date),
            "delivered_at": instants(rows["delivered_at"], unit, None, as_date=False),
            "dispute_opened_at": pa.nulls(n, type=pa.timestamp(unit)),
            "extensions": extensions,
            "weight_g": pa.array(rows["weight_g"], type=pa.float64()),
            "declared_value_usd": pa.array(rows["declared_value_usd"], type=pa.int64()),
        }
    )
    fast = validate_open_orders_table(table, as_of=date(2030, 1, 1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schema, "_typed", lambda raw: None)  # every column through pandas
        reference = validate_open_orders_table(table, as_of=date(2030, 1, 1))
    assert fast.rejects.to_pylist() == reference.rejects.to_pylist()
    assert list(fast.valid) == list(reference.valid)
    for name, values in fast.valid.items():
        expected = reference.valid[name]
        if isinstance(values, pa.Array):
            assert values.equals(expected), name
        else:
            np.testing.assert_array_equal(values, expected, err_msg=name)
            assert values.dtype == expected.dtype, name


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.one_of(shipped_ms, edge_instants_ms, st.none()), min_size=1, max_size=20),
    unit=st.sampled_from(["s", "ms", "us", "ns"]),
    tz=st.sampled_from([None, "UTC", "America/Sao_Paulo", "+09:30"]),
    as_date=st.booleans(),
)
def test_typed_instants_read_as_the_reference_reads_them(
    values: list[int | None], unit: str, tz: str | None, as_date: bool
) -> None:
    """Dates (midnights) and timestamps (time of day kept, as events use them) of Arrow
    dates and timestamps equal the pandas reference's, with the same blanks and range
    failures, and the same text for messages."""
    raw = instants(values, unit, tz, as_date)
    fast = schema._Column.from_arrow(raw)
    reference = schema._Column.from_series(raw.to_pandas())
    assert fast.arrow is not None and reference.arrow is None
    for read in ("dates", "timestamps"):
        for got, want in zip(getattr(fast, read)(), getattr(reference, read)(), strict=True):
            np.testing.assert_array_equal(got, want, err_msg=read)
    np.testing.assert_array_equal(fast.blank, reference.blank)
    assert fast.text.equals(reference.text)


def test_typed_cells_are_quoted_as_written_in_their_reasons() -> None:
    """A typed cell's text is made only for its message; NaN is a missing value."""
    table = pa.table(
        {
            "order_id": pa.array(["A", "B", "C", "D"]),
            "destination_country": pa.array(["BR"] * 4),
            "shipped_at": pa.array([20_300, 20_300, 130_000, 20_300], pa.int32()).cast(pa.date32()),
            "deadline": pa.array([20_340] * 4, type=pa.int32()).cast(pa.date32()),
            "weight_g": pa.array([math.inf, 5.0, 5.0, math.nan]),
            "extensions": pa.array([0.0, 1.5, 0.0, 0.0]),
        }
    )
    checked = validate_open_orders_table(table, as_of=date(2030, 1, 1))
    assert [(r["order_id"], r["column"], r["reason"]) for r in checked.rejects.to_pylist()] == [
        ("A", "weight_g", "'inf' is not a number"),
        ("B", "extensions", "'1.5' is not a whole number"),
        ("C", "shipped_at", "'2325-12-06' is out of the supported range 1900-01-01 to 2199-12-31"),
    ]
    assert checked.valid["order_id"].to_pylist() == ["D"]
    assert np.isnan(checked.valid["weight_g"]).all()
