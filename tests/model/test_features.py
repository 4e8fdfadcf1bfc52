"""Feature encoding (model/features.py): the short-input and vectorised paths agree."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from model.features import _ship_week, lookup

CODES = {"BR": 1, "FR": 2, "7": 3}
VALUES = st.one_of(
    st.sampled_from(["BR", "FR", "XX", "", "br"]),
    st.sampled_from([None, np.nan, pd.NA, 7, 7.5]),
)


@given(st.lists(VALUES, min_size=0, max_size=40))
def test_lookup_short_and_long_paths_agree(values: list[object]) -> None:
    """Below the cut-off a dict loop replaces factorisation: same codes for known, unknown
    and missing values (None, NaN, pd.NA all give the default; non-strings match as str)."""
    short = lookup(np.array(values, dtype=object), CODES, default=-1)
    padded = np.array(values * 3 + ["BR"] * 100, dtype=object)  # long enough to factorise
    long = lookup(padded, CODES, default=-1)[: len(values)]
    np.testing.assert_array_equal(short, long)
    expected = [
        CODES.get(v if isinstance(v, str) else str(v), -1)
        if v is not None and v is not pd.NA and not (isinstance(v, float) and np.isnan(v))
        else -1
        for v in values
    ]
    assert short.tolist() == expected


def test_lookup_reads_pandas_string_columns() -> None:
    series = pd.Series(["FR", None, "XX", "BR"], dtype="str")
    assert lookup(series, CODES).tolist() == [2, 0, 0, 1]
    assert lookup(pd.concat([series] * 40), CODES).tolist() == [2, 0, 0, 1] * 40


@given(st.lists(st.dates(date(1900, 1, 1), date(2199, 12, 31)), min_size=1, max_size=30))
def test_ship_week_is_the_week_of_the_year(days: list[date]) -> None:
    stamps = np.array(days, dtype="datetime64[ns]")
    expected = np.minimum((pd.DatetimeIndex(stamps).day_of_year.to_numpy() - 1) // 7, 51)
    np.testing.assert_array_equal(_ship_week(stamps), expected)
