"""Feature encoding (model/features.py): the short-input and vectorised paths agree."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from data.generate import DEFAULT_AS_OF as AS_OF
from data.generate import generate_open_orders
from model import features
from model.features import (
    SEASON_FEATURES,
    SHARED_FEATURES,
    FeatureEncoder,
    _cny_offset_bin,
    _season_codes,
    _ship_week,
    lookup,
)
from model.schema import validate_history, validate_open_orders

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


@given(
    st.lists(st.dates(date(1900, 1, 1), date(2199, 12, 31)), min_size=1, max_size=30),
    st.integers(0, 86_399),
)
def test_season_codes_of_midnights_come_from_the_day_table_unchanged(
    days: list[date], second: int
) -> None:
    """Midnights read the per-day table; other times are computed; both agree with the
    computation (the table is only a cache of it), at any day of the supported range."""
    midnights = np.array(days, dtype="datetime64[ns]")
    ns = midnights.view(np.int64)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(features, "_SEASON_TABLE_MIN_ROWS", 1)  # the table even for a few days
        week, cny = _season_codes(midnights)
        later = midnights + np.timedelta64(second, "s")
        later_week, later_cny = _season_codes(later)
    np.testing.assert_array_equal(week, features._computed_ship_week(ns))
    np.testing.assert_array_equal(cny, features._computed_cny_offset_bin(ns))
    np.testing.assert_array_equal(later_week, week)  # the same days
    np.testing.assert_array_equal(
        later_cny, features._computed_cny_offset_bin(later.view(np.int64))
    )


@pytest.fixture(scope="module")
def encoder(small_history: pd.DataFrame) -> FeatureEncoder:
    return FeatureEncoder().fit(validate_history(small_history).valid)


def part_names(encoder: FeatureEncoder) -> dict[str, list[str]]:
    """The features of each logit table part (model.hazard)."""
    return {
        "lane": encoder.lane_features,
        "season": [*SHARED_FEATURES, *SEASON_FEATURES],
        "base": list(SHARED_FEATURES),
    }


def test_plausible_codes_hold_every_order_shipped_on_their_days(encoder: FeatureEncoder) -> None:
    """Orders of another seed, shipped more than a year after the training history ends
    (some to countries, regions and methods the encoder pools), encode part by part to codes
    among the plausible ones of the days they were shipped, each listed once."""
    later = AS_OF + timedelta(days=400)
    orders = validate_open_orders(generate_open_orders(3000, seed=21, as_of=later), as_of=later)
    valid = orders.valid
    codes = encoder.transform(valid).codes
    days = np.unique(valid["shipped_at"].to_numpy().astype("datetime64[D]"))
    pooled = codes[:, encoder.feature_names.index("region")] == 0
    assert pooled.any() and not pooled.all()
    for names in part_names(encoder).values():
        plausible = encoder.plausible_codes(names, days, limit=10**7)
        assert plausible is not None
        allowed = encoder.curve_keys(plausible, names)
        assert len(np.unique(allowed)) == len(allowed)
        assert np.isin(encoder.curve_keys(codes, names), allowed).all()


def test_a_region_is_plausible_only_with_its_own_country(
    encoder: FeatureEncoder, small_history: pd.DataFrame
) -> None:
    """Region labels are ``COUNTRY/REGION``: a region's code goes with the code its country
    has in the training rows, the pooled region with every country."""
    lane = encoder.plausible_codes(
        encoder.lane_features, np.array(["2026-01-05"], dtype="datetime64[D]"), limit=10**7
    )
    assert lane is not None
    columns = [encoder.feature_names.index("country"), encoder.feature_names.index("region")]
    pairs = set(map(tuple, lane[:, columns].tolist()))
    training = encoder.transform(validate_history(small_history).valid).codes[:, columns]
    own = dict(training[training[:, 1] > 0][:, ::-1].tolist())  # region -> its country
    assert len(own) == len(encoder.regions_) > 1
    countries = len(encoder.countries_) + 1
    assert pairs == {(c, 0) for c in range(countries)} | {(c, r) for r, c in own.items()}


def test_season_codes_are_the_week_and_cny_pairs_of_the_days(encoder: FeatureEncoder) -> None:
    names = part_names(encoder)["season"]
    one_day = encoder.plausible_codes(names, np.array(["2026-02-20"], dtype="datetime64[D]"), 10**7)
    pairs = (len(encoder.countries_) + 1) * (len(encoder.methods_) + 1)
    assert one_day is not None and len(one_day) == pairs  # one (week, CNY bin) pair
    year = np.datetime64("2026-01-01") + np.arange(365)
    stamps = year.astype("datetime64[ns]")
    weeks = len(set(zip(_ship_week(stamps), _cny_offset_bin(stamps), strict=True)))
    whole_year = encoder.plausible_codes(names, year, 10**7)
    assert whole_year is not None and len(whole_year) == pairs * weeks


def test_plausible_codes_stop_at_the_limit(encoder: FeatureEncoder) -> None:
    days = np.array(["2026-01-05"], dtype="datetime64[D]")
    base = list(SHARED_FEATURES)
    count = (len(encoder.countries_) + 1) * (len(encoder.methods_) + 1)
    codes = encoder.plausible_codes(base, days, limit=count)
    assert codes is not None and len(codes) == count
    assert encoder.plausible_codes(base, days, limit=count - 1) is None
