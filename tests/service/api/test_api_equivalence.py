"""The HTTP answer equals the batch answer: same frame as batch validation, same scores."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import httpx
import pandas as pd
from fastapi.testclient import TestClient

from data.generate import DEFAULT_AS_OF as AS_OF
from model.schema import validate_open_orders
from service.api.frames import orders_frame
from service.api.schemas import OpenOrder
from service.api.state import LoadedModel
from service.scoring import score_raw


def expected_rows(raw: pd.DataFrame, snapshot: LoadedModel, as_of: date) -> list[dict[str, Any]]:
    """What `window-advisor score` computes for ``raw``: ``score_raw`` rows, as JSON values."""
    batch = score_raw(raw, snapshot.model, snapshot.policy, as_of)
    assert batch.rejects.empty  # every generated order is valid: all of them are compared
    rows = []
    for row in batch.scored.to_dict(orient="records"):
        rows.append(
            {
                **row,
                "extend_by_days": int(row["extend_by_days"]),
                "days_remaining": int(row["days_remaining"]),
                "new_deadline": None
                if pd.isna(row["new_deadline"])
                else row["new_deadline"].date().isoformat(),
                "respond_by": None
                if pd.isna(row["respond_by"])
                else row["respond_by"].date().isoformat(),
                "last_milestone": None
                if pd.isna(row["last_milestone"])
                else str(row["last_milestone"]),
                "days_since_last_scan": None
                if pd.isna(row["days_since_last_scan"])
                else int(row["days_since_last_scan"]),
            }
        )
    return rows


def as_scored(answer: dict[str, Any]) -> dict[str, Any]:
    """An HTTP answer with its reasons joined back into the scored file's text."""
    return {**answer, "reasons": ";".join(r["code"] for r in answer["reasons"])}


Records = Callable[[pd.DataFrame], list[dict[str, Any]]]


def test_orders_frame_equals_batch_validation(open_orders: pd.DataFrame, records: Records) -> None:
    parsed = [OpenOrder.model_validate(r) for r in records(open_orders)]
    expected = validate_open_orders(open_orders, as_of=AS_OF).valid
    pd.testing.assert_frame_equal(orders_frame(parsed), expected)


def test_orders_frame_normalises_text_and_dates_as_batch_does() -> None:
    """Padding, case, blank text and UTC offsets: the JSON path and the batch path agree."""
    orders: list[dict[str, Any]] = [
        {
            "order_id": "  a-1 ",
            "destination_country": " br",
            "shipping_method": " Cainiao_Super_Economy ",
            "shipped_at": "2026-08-20",
            "deadline": "2026-11-04T00:00:00Z",
            "extensions": 1,
            "destination_region": " sp ",
            "weight_g": 120,
            "ordered_at": "2026-08-18",
        },
        {
            "order_id": "b-2",
            "destination_country": "De\t",
            "shipping_method": "",
            "shipped_at": "2026-09-30T23:30:00-02:00",
            "deadline": "2026-11-20",
            "delivered_at": "2026-10-20T01:00:00+03:00",
            "destination_region": "",
            "declared_value_usd": 3.5,
        },
        {
            "order_id": "c\u00a03",
            "destination_country": "\u2003us\u00a0",
            "shipped_at": " 2026-10-01 ",
            "deadline": "2026-11-10",
            "extensions": 0,
            "dispute_opened_at": "2026-10-30",
            "weight_g": 0,
            "declared_value_usd": 10,
            "ordered_at": "2026-10-01T10:00:00+14:00",
        },
    ]
    raw = pd.DataFrame(orders).astype(object)  # as a CSV reader hands the batch path text
    raw = raw.where(raw.notna(), None).map(lambda v: v if v is None else str(v))
    expected = validate_open_orders(raw, as_of=AS_OF)
    assert expected.rejects.empty
    parsed = [OpenOrder.model_validate(order) for order in orders]
    pd.testing.assert_frame_equal(orders_frame(parsed), expected.valid)


def test_batch_route_equals_score_raw(
    client: TestClient, open_orders: pd.DataFrame, snapshot: LoadedModel, records: Records
) -> None:
    response = client.post(
        "/v1/recommendations/batch",
        json={"as_of": AS_OF.isoformat(), "orders": records(open_orders)},
    )
    assert response.status_code == 200, response.text
    answers = [as_scored(a) for a in response.json()["results"]]
    assert answers == expected_rows(open_orders, snapshot, AS_OF)
    assert {a["action"] for a in answers} == {"none", "extend", "escalate", "respond_to_dispute"}


def test_single_route_under_concurrency_equals_score_raw(
    client: TestClient, open_orders: pd.DataFrame, snapshot: LoadedModel, records: Records
) -> None:
    """Concurrent single requests are micro-batched; with two as_of dates in flight each
    answer still equals the batch answer for its own date."""
    later = AS_OF + timedelta(days=3)
    orders = records(open_orders)
    dates = [AS_OF if i % 2 == 0 else later for i in range(len(orders))]

    async def ask_all() -> list[dict[str, Any]]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            limit = asyncio.Semaphore(48)

            async def ask(record: dict[str, Any], as_of: date) -> dict[str, Any]:
                async with limit:
                    body = {**record, "as_of": as_of.isoformat()}
                    response = await http.post("/v1/recommendations", json=body)
                    assert response.status_code == 200, response.text
                    result: dict[str, Any] = response.json()
                    return result

            return await asyncio.gather(*(ask(r, d) for r, d in zip(orders, dates, strict=True)))

    answers = [as_scored(a) for a in asyncio.run(ask_all())]
    expected_now = expected_rows(open_orders, snapshot, AS_OF)
    expected_later = expected_rows(open_orders, snapshot, later)
    expected = [(expected_now if d == AS_OF else expected_later)[i] for i, d in enumerate(dates)]
    assert answers == expected
    sizes = client.app.state.metrics.batch_size.collect()[0].samples  # type: ignore[attr-defined]
    count = next(s.value for s in sizes if s.name.endswith("_count"))
    total = next(s.value for s in sizes if s.name.endswith("_sum"))
    assert total / count > 1.5  # requests really were scored together
