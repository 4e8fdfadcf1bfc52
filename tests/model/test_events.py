"""Tracking scans as data: validation with exact reasons, matching to orders, the cut-off."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.errors import SchemaError
from model.events import (
    MILESTONES,
    ScanTable,
    match_events,
    milestone_names,
    scan_state,
    validate_events,
)


def day(text: str) -> int:
    return int(np.datetime64(text, "D").astype(np.int64))


def test_every_bad_scan_is_listed_with_its_line_and_reason() -> None:
    raw = pd.DataFrame(
        {
            "order_id": ["A", "", "B", "C", "D", "E", "F"],
            "event_at": [
                "2026-10-01T10:00:00",
                "2026-10-01",
                "yesterday",
                "2026-10-02",
                "2300-01-01T00:00:00",
                "",
                "2026-10-03T08:00:00+02:00",
            ],
            "milestone": [
                "picked_up",
                "picked_up",
                "picked_up",
                "teleported",
                "picked_up",
                "lost",
                "  Customs_Hold ",
            ],
        }
    )
    validated = validate_events(raw)
    assert validated.rejects.to_dict("records") == [
        {"line": 3, "order_id": None, "column": "order_id", "reason": "missing required value"},
        {
            "line": 4,
            "order_id": "B",
            "column": "event_at",
            "reason": "'yesterday' is not an ISO 8601 date or datetime",
        },
        {
            "line": 5,
            "order_id": "C",
            "column": "milestone",
            "reason": "'teleported' is not a milestone (one of: " + ", ".join(MILESTONES) + ")",
        },
        {
            "line": 6,
            "order_id": "D",
            "column": "event_at",
            "reason": "'2300-01-01T00:00:00' is out of the supported range 1900-01-01 to"
            " 2199-12-31",
        },
        {"line": 7, "order_id": "E", "column": "event_at", "reason": "missing required value"},
    ]
    valid = validated.valid
    assert valid["order_id"].tolist() == ["A", "F"]
    assert valid["line"].tolist() == [2, 8]
    # Time of day kept; an offset is converted to UTC; milestones matched case-insensitively.
    assert valid["event_at"].tolist() == [
        pd.Timestamp("2026-10-01T10:00:00"),
        pd.Timestamp("2026-10-03T06:00:00"),
    ]
    assert valid["milestone"].tolist() == ["picked_up", "customs_hold"]


def test_exact_duplicates_count_once_but_a_different_scan_stays() -> None:
    raw = pd.DataFrame(
        {
            "order_id": ["A", "A", "A", "A"],
            "event_at": ["2026-10-01T10:00", "2026-10-01T10:00", "2026-10-01T10:00", "2026-10-02"],
            "milestone": ["picked_up", "PICKED_UP", "picked_up", "picked_up"],
            "location": ["Shenzhen", "Shenzhen", "Guangzhou", "Shenzhen"],
        }
    )
    validated = validate_events(raw)
    assert validated.duplicates == 1
    assert validated.valid["line"].tolist() == [2, 4, 5]
    assert validated.n_rows == 4


def test_a_missing_required_column_is_one_error() -> None:
    with pytest.raises(SchemaError, match=r"tracking events is missing required column\(s\): "):
        validate_events(pd.DataFrame({"order_id": ["A"], "event_at": ["2026-10-01"]}))


def _table(rows: list[tuple[str, str, str]]) -> ScanTable:
    frame = pd.DataFrame(rows, columns=["order_id", "event_at", "milestone"])
    return ScanTable.from_frame(validate_events(frame).valid)


def test_scans_before_shipment_are_rejected_and_unknown_orders_counted() -> None:
    table = _table(
        [
            ("A", "2026-09-29T23:00", "info_received"),
            ("A", "2026-09-30T01:00", "picked_up"),
            ("A", "2026-10-02", "departed_origin"),
            ("Z", "2026-10-02", "picked_up"),
            ("Z", "2026-10-03", "departed_origin"),
        ]
    )
    matched = match_events(
        table, np.array(["A", "B"], dtype=object), np.array(["2026-09-30", "2026-10-01"], "M8[ns]")
    )
    assert matched.rejects.to_dict("records") == [
        {
            "line": 2,
            "order_id": "A",
            "column": "event_at",
            "reason": "scan dated 2026-09-29, before the order's shipped_at (2026-09-30)",
        }
    ]
    assert (matched.unknown_orders, matched.unknown_scans) == (1, 2)
    assert matched.table.n_scans == 2  # A's scans on and after the shipping day


def test_state_reads_scans_up_to_and_including_the_cutoff_day() -> None:
    table = _table(
        [
            ("A", "2026-10-01T09:00", "picked_up"),
            ("A", "2026-10-03T23:59", "departed_origin"),
            ("A", "2026-10-09", "arrived_destination"),
            ("A", "2026-10-10", "customs_hold"),
            ("A", "2026-10-10", "exception"),
        ]
    )
    ship = day("2026-10-01")
    cutoffs = np.array([day(d) for d in ("2026-09-30", "2026-10-03", "2026-10-08", "2026-10-20")])
    state = scan_state(table, np.zeros(4, dtype=np.int64), np.full(4, ship), cutoffs)
    assert state.n_scans.tolist() == [0, 2, 2, 5]
    assert milestone_names(state.last_milestone).tolist() == [
        None,
        "departed_origin",
        "departed_origin",
        "exception",
    ]
    assert state.days_since_last_scan[1:].tolist() == [0.0, 5.0, 10.0]
    assert state.first_day["customs_hold"][[2, 3]].tolist()[1] == 9.0
    assert np.isnan(state.first_day["customs_hold"][2])
    assert milestone_names(state.furthest).tolist() == [
        None,
        "departed_origin",
        "departed_origin",
        "customs_hold",
    ]
    assert state.exceptions.tolist() == [0, 0, 0, 1]


def test_an_order_without_scans_is_not_an_order_scanned_once() -> None:
    table = _table([("A", "2026-10-01", "picked_up")])
    index = table.lookup(np.array(["A", "B"], dtype=object))
    assert index.tolist() == [0, -1]
    state = scan_state(table, index, np.full(2, day("2026-10-01")), np.full(2, day("2026-10-05")))
    assert state.has_scans.tolist() == [True, False]
    assert milestone_names(state.last_milestone).tolist() == ["picked_up", None]
    assert np.isnan(state.days_since_last_scan[1])


SCAN = st.tuples(
    st.sampled_from(["A", "B", "C"]),
    st.integers(min_value=0, max_value=60),
    st.sampled_from(MILESTONES),
)


@settings(max_examples=150, deadline=None)
@given(scans=st.lists(SCAN, min_size=1, max_size=40), cutoff=st.integers(-2, 65))
def test_a_scan_after_the_cutoff_changes_nothing(
    scans: list[tuple[str, int, str]], cutoff: int
) -> None:
    """The state from all scans equals the state from only those dated by the cut-off."""
    base = day("2026-09-01")

    def table_of(kept: list[tuple[str, int, str]]) -> ScanTable:
        rows = [(o, str(np.datetime64(base + d, "D")) + "T12:00", m) for o, d, m in kept]
        return _table(rows) if rows else ScanTable.empty()

    everything = table_of(scans)
    before = table_of([s for s in scans if s[1] <= cutoff])
    ids = np.array(["A", "B", "C", "D"], dtype=object)
    ship = np.full(4, base)
    cut = np.full(4, base + cutoff)
    full = scan_state(everything, everything.lookup(ids), ship, cut)
    censored = scan_state(before, before.lookup(ids), ship, cut)
    for name in ("n_scans", "last_milestone", "furthest", "failed_attempts", "exceptions"):
        np.testing.assert_array_equal(getattr(full, name), getattr(censored, name), name)
    for name in ("last_scan_day", "days_since_last_scan", "delivered_day"):
        np.testing.assert_array_equal(getattr(full, name), getattr(censored, name), name)
    for name, values in full.first_day.items():
        np.testing.assert_array_equal(values, censored.first_day[name], name)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),  # order
            st.integers(0, 4),  # second (few: many ties)
            st.sampled_from([0, 0, 0, 500_000_000]),  # sub-second part, usually none
            st.integers(0, len(MILESTONES) - 1),
            st.sampled_from([None, "x", "y"]),  # free text
        ),
        max_size=60,
    )
)
def test_packing_and_duplicates_agree_with_the_plain_definitions(
    rows: list[tuple[int, int, int, int, str | None]],
) -> None:
    """The one-key sort and the hashed duplicate search give what a lexsort and pandas'
    ``duplicated`` give, with or without sub-second times."""
    from model.events import _exact_duplicates, _scan_order

    frame = pd.DataFrame(rows, columns=["owner", "second", "below", "code", "text"])
    owner = frame["owner"].to_numpy(np.int64)
    time_ns = (frame["second"] * 10**9 + 1_790_000_000 * 10**9 + frame["below"]).to_numpy(np.int64)
    code = frame["code"].to_numpy(np.int8)
    order = _scan_order(owner, time_ns, code)
    assert order.tolist() == np.lexsort((code, time_ns, owner)).tolist()
    text = pd.factorize(frame["text"], use_na_sentinel=True)[0].astype(np.int64)
    duplicate = _exact_duplicates(owner, time_ns, code, [text])
    expected = frame[["owner", "second", "below", "code", "text"]].duplicated().to_numpy()
    assert duplicate.tolist() == expected.tolist()
