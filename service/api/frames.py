"""Orders checked by :mod:`service.api.schemas` to scoring columns, and scores to JSON.

:func:`orders_columns` builds, as numpy arrays, exactly the columns
:func:`model.schema.validate_open_orders` returns for the same orders (dtypes,
normalisation; a test holds :func:`orders_frame` of them equal to the validated frame), so
the service hands them straight to :func:`service.scoring.score_columns` (the one scoring
function's NumPy form), without parsing text a second time or building a DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from model.events import MILESTONE_CODE, ScanTable
from model.features import column
from model.schema import UNKNOWN_METHOD
from service.api.schemas import OpenOrder
from service.policy import reason_message

__all__ = ["orders_columns", "orders_frame", "orders_scans", "reason_list", "recommendations"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min
_ONE_MICROSECOND = timedelta(microseconds=1)


def _dates(values: list[date | None]) -> np.ndarray:
    ns = np.fromiter(
        (_NAT if v is None else (v.toordinal() - _EPOCH_ORDINAL) * _DAY_NS for v in values),
        dtype=np.int64,
        count=len(values),
    )
    return ns.view("datetime64[ns]")


def _objects(values: list[Any]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def orders_columns(orders: Sequence[OpenOrder]) -> dict[str, np.ndarray]:
    """The validated open-orders columns (as ``validate_open_orders(...).valid``) of
    ``orders`` as arrays; ``line`` numbers them from 2 as if they were rows of a CSV file."""
    n = len(orders)
    rows = [o.__dict__ for o in orders]

    def field(name: str) -> list[Any]:
        return [row[name] for row in rows]

    region = [pd.NA if r is None else r for r in field("destination_region")]
    extensions = [0 if e is None else e for e in field("extensions")]
    return {
        "line": np.arange(2, n + 2, dtype=np.int64),
        "order_id": _objects(field("order_id")),
        "destination_country": _objects(field("destination_country")),
        "shipping_method": _objects(
            [UNKNOWN_METHOD if m is None else m for m in field("shipping_method")]
        ),
        "destination_region": _objects(region),
        "shipped_at": _dates(field("shipped_at")),
        "deadline": _dates(field("deadline")),
        "delivered_at": _dates(field("delivered_at")),
        "ordered_at": _dates(field("ordered_at")),
        "dispute_opened_at": _dates(field("dispute_opened_at")),
        "weight_g": np.array(field("weight_g"), dtype=np.float64),
        "declared_value_usd": np.array(field("declared_value_usd"), dtype=np.float64),
        "extensions": np.array(extensions, dtype=np.int64),
    }


def orders_scans(orders: Sequence[OpenOrder]) -> tuple[ScanTable, np.ndarray] | None:
    """The orders' scans as a table keyed by position (two requests of one micro-batch may
    share an order_id), and each order's row in it; None when no order carries any.

    Exact duplicate scans of an order count once, as in events files.
    """
    if not any(order.events for order in orders):
        return None
    owner: list[int] = []
    moments: list[datetime] = []
    code: list[int] = []
    for position, order in enumerate(orders):
        if not order.events:
            continue
        keys = [event.key() for event in order.events]
        if len(keys) > 1:
            keys = list(dict.fromkeys(keys))  # exact duplicates once, in order
        owner.extend([position] * len(keys))
        moments.extend([key[0] for key in keys])
        code.extend([MILESTONE_CODE[key[1]] for key in keys])
    n = len(orders)
    table = ScanTable.from_arrays(
        np.arange(n),
        np.array(owner, dtype=np.int64),
        np.array(moments, dtype="datetime64[us]").astype("datetime64[ns]").view(np.int64),
        np.array(code, dtype=np.int8),
        np.zeros(len(owner), dtype=np.int64),
    )
    return table, np.arange(n, dtype=np.int64)


def orders_frame(orders: Sequence[OpenOrder]) -> pd.DataFrame:
    """:func:`orders_columns` as a DataFrame: the frame ``validate_open_orders`` returns."""
    columns = {
        name: pd.Series(values, dtype=object, copy=False) if values.dtype == object else values
        for name, values in orders_columns(orders).items()
    }  # object columns stay object: no inference of a string dtype
    return pd.DataFrame(columns)


@lru_cache(maxsize=4096)
def reason_list(reasons: str) -> list[dict[str, str]]:
    """``"a;b"`` as ``[{"code": "a", "message": ...}, ...]`` (shared, do not mutate)."""
    return [{"code": code, "message": reason_message(code)} for code in reasons.split(";") if code]


def _iso_dates(values: np.ndarray) -> list[str | None]:
    stamps = np.asarray(values, dtype="datetime64[D]")
    text = np.datetime_as_string(stamps, unit="D")
    return [None if t == "NaT" else t for t in text.tolist()]


def recommendations(scored: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of :func:`service.scoring.score_columns`' output (or of the frame
    :func:`~service.scoring.score_frame` makes of it) as response dicts, in input order."""

    def values(name: str) -> np.ndarray:
        return column(scored, name)

    columns = {
        "order_id": values("order_id").tolist(),
        "action": values("action").tolist(),
        "extend_by_days": values("extend_by_days").astype(np.int64).tolist(),
        "new_deadline": _iso_dates(values("new_deadline")),
        "days_remaining": values("days_remaining").astype(np.int64).tolist(),
        "p_late": values("p_late").astype(np.float64).tolist(),
        "p_late_after_extension": values("p_late_after_extension").astype(np.float64).tolist(),
        "respond_by": _iso_dates(values("respond_by")),
        "reasons": [reason_list(r) for r in values("reasons").tolist()],
        "model_version": values("model_version").tolist(),
        "last_milestone": values("last_milestone").tolist(),
        "days_since_last_scan": [
            None if d != d else int(d)  # NaN: no scans
            for d in values("days_since_last_scan").astype(np.float64).tolist()
        ],
    }
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
