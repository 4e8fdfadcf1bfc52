"""Orders checked by :mod:`service.api.schemas` to the validated frame, and scores to JSON.

:func:`orders_frame` builds exactly the frame :func:`model.schema.validate_open_orders`
returns for the same orders (columns, dtypes, normalisation; a test holds the two equal), so
the service can hand it straight to :func:`service.scoring.score_frame`, the one scoring
function, without parsing text a second time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from model.schema import UNKNOWN_METHOD
from service.api.schemas import OpenOrder
from service.policy import reason_message

__all__ = ["orders_frame", "reason_list", "recommendations"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min


def _dates(values: list[date | None]) -> np.ndarray:
    ns = np.fromiter(
        (_NAT if v is None else (v.toordinal() - _EPOCH_ORDINAL) * _DAY_NS for v in values),
        dtype=np.int64,
        count=len(values),
    )
    return ns.view("datetime64[ns]")


def _objects(values: list[Any]) -> pd.Series:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return pd.Series(array, dtype=object, copy=False)  # no inference of a string dtype


def orders_frame(orders: Sequence[OpenOrder]) -> pd.DataFrame:
    """The validated open-orders frame (as ``validate_open_orders(...).valid``) of ``orders``;
    ``line`` numbers them from 2 as if they were the rows of a CSV file."""
    n = len(orders)
    rows = [o.__dict__ for o in orders]

    def column(name: str) -> list[Any]:
        return [row[name] for row in rows]

    region = [pd.NA if r is None else r for r in column("destination_region")]
    extensions = [0 if e is None else e for e in column("extensions")]
    return pd.DataFrame(
        {
            "line": np.arange(2, n + 2, dtype=np.int64),
            "order_id": _objects(column("order_id")),
            "destination_country": _objects(column("destination_country")),
            "shipping_method": _objects(
                [UNKNOWN_METHOD if m is None else m for m in column("shipping_method")]
            ),
            "destination_region": _objects(region),
            "shipped_at": _dates(column("shipped_at")),
            "deadline": _dates(column("deadline")),
            "delivered_at": _dates(column("delivered_at")),
            "ordered_at": _dates(column("ordered_at")),
            "dispute_opened_at": _dates(column("dispute_opened_at")),
            "weight_g": np.array(column("weight_g"), dtype=np.float64),
            "declared_value_usd": np.array(column("declared_value_usd"), dtype=np.float64),
            "extensions": np.array(extensions, dtype=np.int64),
        }
    )


@lru_cache(maxsize=4096)
def reason_list(reasons: str) -> list[dict[str, str]]:
    """``"a;b"`` as ``[{"code": "a", "message": ...}, ...]`` (shared, do not mutate)."""
    return [{"code": code, "message": reason_message(code)} for code in reasons.split(";") if code]


def _iso_dates(values: np.ndarray) -> list[str | None]:
    stamps = np.asarray(values, dtype="datetime64[D]")
    text = np.datetime_as_string(stamps, unit="D")
    return [None if t == "NaT" else t for t in text.tolist()]


def recommendations(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of :func:`service.scoring.score_frame`'s output as response dicts (input order)."""
    columns = {
        "order_id": scored["order_id"].tolist(),
        "action": scored["action"].tolist(),
        "extend_by_days": scored["extend_by_days"].to_numpy(dtype=np.int64).tolist(),
        "new_deadline": _iso_dates(scored["new_deadline"].to_numpy()),
        "days_remaining": scored["days_remaining"].to_numpy(dtype=np.int64).tolist(),
        "p_late": scored["p_late"].to_numpy(dtype=np.float64).tolist(),
        "p_late_after_extension": scored["p_late_after_extension"]
        .to_numpy(dtype=np.float64)
        .tolist(),
        "respond_by": _iso_dates(scored["respond_by"].to_numpy()),
        "reasons": [reason_list(r) for r in scored["reasons"].tolist()],
        "model_version": scored["model_version"].tolist(),
    }
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]
