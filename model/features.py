"""Pure feature functions: lanes, calendar effects and window length as small integer codes.

Every feature is discrete, so a parcel's whole survival curve depends only on one integer
*curve key*; the predictor computes each distinct curve once and reuses it (see
:mod:`model.hazard`). Code 0 of a categorical feature means "pooled": rare or unseen values
map there, and the model learns it from a random share of masked training rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from model.schema import MAX_DATE, MIN_DATE

__all__ = [
    "CNY_DATES",
    "POOLED",
    "SEASON_FEATURES",
    "SHARED_FEATURES",
    "Columns",
    "EncodedFeatures",
    "FeatureEncoder",
    "column",
    "days_between",
    "lookup",
    "text_column",
]

POOLED = "__pooled__"

# Chinese New Year (first day), which shuts origin handling for weeks around it.
CNY_DATES: tuple[date, ...] = tuple(
    date.fromisoformat(d)
    for d in (
        "2012-01-23",
        "2013-02-10",
        "2014-01-31",
        "2015-02-19",
        "2016-02-08",
        "2017-01-28",
        "2018-02-16",
        "2019-02-05",
        "2020-01-25",
        "2021-02-12",
        "2022-02-01",
        "2023-01-22",
        "2024-02-10",
        "2025-01-29",
        "2026-02-17",
        "2027-02-06",
        "2028-01-26",
        "2029-02-13",
        "2030-02-03",
        "2031-01-23",
        "2032-02-11",
        "2033-01-31",
        "2034-02-19",
        "2035-02-08",
        "2036-01-28",
        "2037-02-15",
        "2038-02-04",
        "2039-01-24",
        "2040-02-12",
    )
)
_CNY_NS = np.array([np.datetime64(d, "ns") for d in CNY_DATES]).astype("int64")
_DAY_NS = 86_400 * 10**9

# Discretisation of the numeric features (bins are part of the curve key).
CNY_LOW, CNY_HIGH, CNY_STEP = -42, 62, 7  # days from the nearest CNY, clipped
WINDOW_STEP, WINDOW_MAX = 10, 239  # original window length (deadline - shipped_at) in days
HANDOFF_MAX = 15  # days from order to carrier hand-off


SHARED_FEATURES = ("country", "method")  # interact with both the lane and the season
SEASON_FEATURES = ("ship_week", "cny_bin")

Columns = Mapping[str, Any]
"""A validated frame, or the same columns as a dict of equal-length arrays.

The service builds the dict straight from checked requests: for a few dozen rows, building
and indexing a DataFrame costs more than the whole prediction. Batch scoring passes the
columns of :func:`model.schema.validate_open_orders_table`, whose text columns are Arrow
string arrays: their look-ups go through Arrow's dictionary encoding.
"""

# Below this many rows a Python loop over a dict beats pandas' factorisation.
_SMALL = 64


def column(frame: Columns, name: str) -> np.ndarray:
    """One column of ``frame`` as a numpy array (no copy when it already is one)."""
    values = frame[name]
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.to_numpy(zero_copy_only=False)
    return values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)


def text_column(frame: Columns, name: str) -> np.ndarray | pa.Array | pa.ChunkedArray:
    """A text column for :func:`lookup`: Arrow arrays as they are, else as numpy."""
    values = frame[name]
    return values if isinstance(values, pa.Array | pa.ChunkedArray) else column(frame, name)


def days_between(later: pd.Series | np.ndarray, earlier: pd.Series | np.ndarray) -> np.ndarray:
    """Whole days from ``earlier`` to ``later`` (both midnight timestamps); NaT gives -1."""
    later_ns = np.asarray(later, dtype="datetime64[ns]").astype("int64")
    earlier_ns = np.asarray(earlier, dtype="datetime64[ns]").astype("int64")
    nat = np.iinfo(np.int64).min
    out = (later_ns - earlier_ns) // _DAY_NS
    return np.where((later_ns == nat) | (earlier_ns == nat), -1, out)


def _cny_offset_bin(shipped: np.ndarray) -> np.ndarray:
    """Bin of the days from the nearest Chinese New Year (clipped to CNY_LOW..CNY_HIGH)."""
    return _season_codes(shipped)[1]


def _ship_week(shipped: np.ndarray) -> np.ndarray:
    """Week of the year, 0-51 (the last days of a year join week 51)."""
    return _season_codes(shipped)[0]


def _season_codes(shipped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ship week, CNY bin) of each timestamp. In large batches, midnights of supported days
    (all validated dates) read both from a table with a row per day (built once, ~10 ms);
    anything else is computed."""
    ns = np.asarray(shipped, dtype="datetime64[ns]").view(np.int64).reshape(-1)
    if len(ns) >= _SEASON_TABLE_MIN_ROWS:
        day, rest = np.divmod(ns, _DAY_NS)
        low, high = int(day.min()), int(day.max())
        if low >= _FIRST_TABLE_DAY and high <= _LAST_TABLE_DAY and not rest.any():
            weeks, bins = _season_table()
            at = day - _FIRST_TABLE_DAY
            return weeks[at].astype(np.int64), bins[at].astype(np.int64)
    return _computed_ship_week(ns), _computed_cny_offset_bin(ns)


_SEASON_TABLE_MIN_ROWS = 4096  # below this, computing costs less than building the table
_FIRST_TABLE_DAY = (MIN_DATE - date(1970, 1, 1)).days  # the dates validation accepts
_LAST_TABLE_DAY = (MAX_DATE - date(1970, 1, 1)).days


@lru_cache(maxsize=1)
def _season_table() -> tuple[np.ndarray, np.ndarray]:
    """Ship week and CNY bin of every supported day (110k days; int8 each)."""
    ns = np.arange(_FIRST_TABLE_DAY, _LAST_TABLE_DAY + 1, dtype=np.int64) * _DAY_NS
    return (
        _computed_ship_week(ns).astype(np.int8),
        _computed_cny_offset_bin(ns).astype(np.int8),
    )


def _computed_cny_offset_bin(ns: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(_CNY_NS, ns), 1, len(_CNY_NS) - 1)
    before, after = _CNY_NS[idx - 1], _CNY_NS[idx]
    nearest = np.where(ns - before <= after - ns, before, after)
    offset = np.clip((ns - nearest) // _DAY_NS, CNY_LOW, CNY_HIGH)
    return ((offset - CNY_LOW) // CNY_STEP).astype(np.int64)


def _computed_ship_week(ns: np.ndarray) -> np.ndarray:
    days = ns.view("datetime64[ns]").astype("datetime64[D]")
    day_of_year = (days - days.astype("datetime64[Y]")).astype(np.int64)  # 0 on 1 January
    return np.minimum(day_of_year // 7, 51)


@dataclass(frozen=True)
class EncodedFeatures:
    """Integer-coded features of a frame and the flags the predictor reports as reasons."""

    codes: np.ndarray  # (n, n_features) int64, columns = FeatureEncoder.feature_names
    curve_key: np.ndarray  # (n,) int64, one survival curve per distinct key
    unseen_country: np.ndarray  # (n,) bool: country never seen in training
    sparse_lane: np.ndarray  # (n,) bool: country seen too rarely to have its own estimate

    def take(self, rows: np.ndarray) -> EncodedFeatures:
        """The features of ``rows`` (positions or a boolean mask)."""
        return EncodedFeatures(
            codes=self.codes[rows],
            curve_key=self.curve_key[rows],
            unseen_country=self.unseen_country[rows],
            sparse_lane=self.sparse_lane[rows],
        )


@dataclass
class FeatureEncoder:
    """Learns the category vocabularies from history and encodes frames into feature codes.

    Categories seen in fewer than ``min_shipments`` training shipments are pooled (code 0).
    Regions are encoded as ``COUNTRY/REGION`` so the same name in two countries stays apart.
    """

    min_shipments: int = 30
    max_categories: int = 250
    countries_: dict[str, int] = field(default_factory=dict)
    methods_: dict[str, int] = field(default_factory=dict)
    regions_: dict[str, int] = field(default_factory=dict)
    seen_countries_: frozenset[str] = frozenset()
    use_handoff_: bool = False

    @property
    def lane_features(self) -> list[str]:
        """Features of the lane itself (may interact with each other and with time)."""
        names = ["country", "method", "region", "window_bin"]
        return [*names, "handoff_bin"] if self.use_handoff_ else names

    @property
    def feature_names(self) -> list[str]:
        return [*self.lane_features, *SEASON_FEATURES]

    @property
    def categorical(self) -> list[bool]:
        return [name in {"country", "method", "region"} for name in self.feature_names]

    @property
    def radices(self) -> list[int]:
        sizes = {
            "country": len(self.countries_) + 1,
            "method": len(self.methods_) + 1,
            "region": len(self.regions_) + 1,
            "ship_week": 52,
            "cny_bin": (CNY_HIGH - CNY_LOW) // CNY_STEP + 1,
            "window_bin": WINDOW_MAX // WINDOW_STEP + 1,
            "handoff_bin": HANDOFF_MAX + 2,
        }
        return [sizes[name] for name in self.feature_names]

    def _vocabulary(self, values: pd.Series) -> dict[str, int]:
        counts = values.dropna().value_counts()
        kept = counts[counts >= self.min_shipments].index[: self.max_categories]
        return {str(v): i + 1 for i, v in enumerate(sorted(map(str, kept)))}

    def fit(self, history: pd.DataFrame) -> FeatureEncoder:
        self.countries_ = self._vocabulary(history["destination_country"])
        self.methods_ = self._vocabulary(history["shipping_method"])
        self.regions_ = self._vocabulary(pd.Series(_region_labels(history), dtype=object))
        self.seen_countries_ = frozenset(map(str, history["destination_country"].dropna()))
        self.use_handoff_ = bool(history["ordered_at"].notna().mean() > 0.5)
        return self

    def transform(self, frame: Columns, *, extension_days: int = 30) -> EncodedFeatures:
        """Encode a validated frame (or its columns as arrays). The window is the original
        one: ``deadline`` less ``extension_days`` per extension already granted (column
        ``extensions``, if any)."""
        shipped = column(frame, "shipped_at")
        window = days_between(column(frame, "deadline"), shipped)
        if "extensions" in frame:
            window = window - extension_days * column(frame, "extensions").astype(np.int64)
        country = _dictionary(text_column(frame, "destination_country"))  # looked up twice
        week, cny_bin = _season_codes(shipped)
        columns = {
            "country": lookup(country, self.countries_),
            "method": lookup(text_column(frame, "shipping_method"), self.methods_),
            "region": lookup(_region_labels(frame), self.regions_),
            "ship_week": week,
            "cny_bin": cny_bin,
            "window_bin": np.clip(window, 0, WINDOW_MAX) // WINDOW_STEP,
        }
        if self.use_handoff_:
            handoff = days_between(shipped, column(frame, "ordered_at"))
            columns["handoff_bin"] = np.where(
                handoff < 0, HANDOFF_MAX + 1, np.minimum(handoff, HANDOFF_MAX)
            )
        codes = np.column_stack([columns[name] for name in self.feature_names]).astype(np.int64)
        unseen = ~lookup(country, dict.fromkeys(self.seen_countries_, 1)).astype(bool)
        return EncodedFeatures(
            codes=codes,
            curve_key=self.curve_keys(codes),
            unseen_country=unseen,
            sparse_lane=(columns["country"] == 0) & ~unseen,
        )

    def region_countries(self) -> np.ndarray:
        """The country code of each region code (0 for the pooled region, and for a region
        whose country is pooled)."""
        countries = np.zeros(len(self.regions_) + 1, dtype=np.int64)
        for label, code in self.regions_.items():
            countries[code] = self.countries_.get(label.split("/", 1)[0], 0)
        return countries

    def plausible_codes(
        self, names: list[str], shipped: np.ndarray, limit: int
    ) -> np.ndarray | None:
        """Every combination of the ``names`` features' codes that an order shipped on one of
        the days ``shipped`` can have (the other columns 0), or None when there are more than
        ``limit``. A region comes with its own country (the pooled region with any); ship week
        and CNY bin come in the pairs those days have; any other feature takes every code."""
        radix_of = dict(zip(self.feature_names, self.radices, strict=True))
        groups: list[tuple[list[str], np.ndarray]] = []
        rest = list(names)
        if "country" in rest and "region" in rest:
            own = self.region_countries()
            countries = np.arange(radix_of["country"])
            pairs = np.concatenate(
                [
                    np.column_stack([countries, np.zeros_like(countries)]),  # pooled region
                    np.column_stack([own[1:], np.arange(1, len(own))]),
                ]
            )
            groups.append((["country", "region"], np.unique(pairs, axis=0)))
            rest = [name for name in rest if name not in ("country", "region")]
        if "ship_week" in rest and "cny_bin" in rest:
            days = np.asarray(shipped, dtype="datetime64[ns]")
            pairs = np.column_stack(_season_codes(days))
            groups.append((["ship_week", "cny_bin"], np.unique(pairs, axis=0)))
            rest = [name for name in rest if name not in ("ship_week", "cny_bin")]
        groups += [([name], np.arange(radix_of[name])[:, None]) for name in rest]
        if int(np.prod([len(values) for _, values in groups], dtype=np.float64)) > limit:
            return None
        codes = np.zeros((1, len(self.feature_names)), dtype=np.int64)
        for group, values in groups:
            columns = [self.feature_names.index(name) for name in group]
            grown = np.repeat(codes, len(values), axis=0)
            grown[:, columns] = np.tile(values, (len(codes), 1))
            codes = grown
        return codes

    def curve_keys(self, codes: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """Mixed-radix integer key of each row's codes for ``names`` (default: all features)."""
        names = names or self.feature_names
        radix_of = dict(zip(self.feature_names, self.radices, strict=True))
        key = np.zeros(len(codes), dtype=np.int64)
        for name in names:
            key = key * radix_of[name] + codes[:, self.feature_names.index(name)]
        return key

    def decode_keys(self, keys: np.ndarray, names: list[str] | None = None) -> np.ndarray:
        """Inverse of :meth:`curve_keys`: all feature columns, 0 for those not in ``names``."""
        names = names or self.feature_names
        radix_of = dict(zip(self.feature_names, self.radices, strict=True))
        keys = np.asarray(keys, dtype=np.int64).copy()
        codes = np.zeros((len(keys), len(self.feature_names)), dtype=np.int64)
        for name in reversed(names):
            codes[:, self.feature_names.index(name)] = keys % radix_of[name]
            keys //= radix_of[name]
        return codes


def lookup(
    values: pd.Series | np.ndarray | pa.Array | pa.ChunkedArray,
    codes: dict[str, int],
    default: int = 0,
) -> np.ndarray:
    """``codes[value]`` per row (``default`` when missing or unknown). Long arrays go through
    factorisation (Arrow arrays through dictionary encoding): one dictionary look-up per
    distinct value instead of per row."""
    if isinstance(values, pa.Array | pa.ChunkedArray):
        encoded = _dictionary(values)
        names = encoded.dictionary.to_pylist()
        table = np.array([codes.get(str(u), default) for u in names] + [default], dtype=np.int64)
        return table[pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)]
    if len(values) <= _SMALL:
        return np.fromiter(
            (_code(v, codes, default) for v in np.asarray(values, dtype=object)),
            dtype=np.int64,
            count=len(values),
        )
    index, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([codes.get(str(u), default) for u in uniques] + [default], dtype=np.int64)
    return table[index]  # the NA sentinel -1 picks the trailing default


def _dictionary(values: Any) -> Any:
    """An Arrow text array dictionary-encoded (once); anything else as it is."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array) and not isinstance(values, pa.DictionaryArray):
        return pc.dictionary_encode(values)
    return values


def _code(value: Any, codes: dict[str, int], default: int) -> int:
    if isinstance(value, str):
        return codes.get(value, default)
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return default
    return codes.get(str(value), default)


def _region_labels(frame: Columns) -> np.ndarray | pa.Array:
    """``COUNTRY/REGION`` per row, None where the region is missing (object array; an
    Arrow array, null where missing, when the columns are Arrow arrays)."""
    region, country = frame["destination_region"], frame["destination_country"]
    if isinstance(region, pa.Array | pa.ChunkedArray) and isinstance(
        country, pa.Array | pa.ChunkedArray
    ):
        return pc.binary_join_element_wise(country, region, "/")
    region = column(frame, "destination_region")
    known = ~pd.isna(region)
    labels = np.full(len(region), None, dtype=object)
    if known.any():
        country = column(frame, "destination_country").astype(object)[known]
        labels[known] = country + "/" + region.astype(object)[known]
    return labels
