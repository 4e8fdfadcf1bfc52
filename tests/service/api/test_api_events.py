"""Orders with carrier scans over HTTP: validation located at the scan, the two new fields,
and the same answer as batch scoring of the same order with the same scans."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from model.events import MILESTONES, ScanTable, match_events, validate_events
from service.api.state import LoadedModel
from service.scoring import score_raw

AS_OF = "2026-11-01"
ORDER: dict[str, Any] = {
    "order_id": "S-1",
    "destination_country": "BR",
    "shipping_method": "cainiao_super_economy",
    "shipped_at": "2026-08-20",
    "deadline": "2026-11-04",
    "as_of": AS_OF,
}
SCANS = [
    {"event_at": "2026-08-20T10:00:00", "milestone": "picked_up", "location": "Shenzhen"},
    {"event_at": "2026-08-24T03:00:00+08:00", "milestone": "departed_origin"},
    {"event_at": "2026-09-10", "milestone": "arrived_destination"},
    {"event_at": "2026-09-12T09:30:00", "milestone": "Customs_Hold", "description": "PAR 21"},
]


def errors_of(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(e["field"], e["msg"]) for e in response.json()["detail"]]


def test_scans_give_the_last_milestone_and_the_silence(client: TestClient) -> None:
    body = client.post("/v1/recommendations", json={**ORDER, "events": SCANS}).json()
    assert body["last_milestone"] == "customs_hold"
    assert body["days_since_last_scan"] == 50  # 2026-09-12 to 2026-11-01
    assert "in_customs" in [r["code"] for r in body["reasons"]]
    assert 0.0 <= body["p_late_after_extension"] <= body["p_late"] <= 1.0


def test_without_scans_the_new_fields_are_null(client: TestClient) -> None:
    events: list[object] | None
    for events in (None, []):
        body = client.post("/v1/recommendations", json={**ORDER, "events": events}).json()
        assert body["last_milestone"] is None
        assert body["days_since_last_scan"] is None


def test_scans_after_as_of_are_not_read(client: TestClient) -> None:
    later = [*SCANS, {"event_at": "2026-11-02T08:00:00", "milestone": "delivered"}]
    with_later = client.post("/v1/recommendations", json={**ORDER, "events": later}).json()
    without = client.post("/v1/recommendations", json={**ORDER, "events": SCANS}).json()
    assert with_later == without


def test_a_delivered_scan_by_as_of_means_delivered(client: TestClient) -> None:
    delivered = [*SCANS, {"event_at": "2026-10-30T15:00:00", "milestone": "delivered"}]
    body = client.post("/v1/recommendations", json={**ORDER, "events": delivered}).json()
    assert (body["action"], body["p_late"], body["p_late_after_extension"]) == ("none", 0.0, 0.0)
    assert [r["code"] for r in body["reasons"]] == ["delivered"]
    assert body["last_milestone"] == "delivered"


def test_a_returning_parcel_is_escalated(client: TestClient) -> None:
    returning = [*SCANS, {"event_at": "2026-10-20", "milestone": "returning"}]
    body = client.post("/v1/recommendations", json={**ORDER, "events": returning}).json()
    assert (body["p_late"], body["p_late_after_extension"]) == (1.0, 1.0)
    assert body["action"] == "escalate"
    assert "returning_to_sender" in [r["code"] for r in body["reasons"]]


def test_invalid_scans_are_named_by_index(client: TestClient) -> None:
    bad = [
        {"event_at": "2026-08-21", "milestone": "picked_up"},
        {"event_at": "not a date", "milestone": "departed_origin"},
        {"event_at": "2026-08-25", "milestone": "teleported"},
        {"event_at": "2026-08-19T23:00:00", "milestone": "info_received"},
        {"event_at": "2026-08-26", "milestone": "lost", "colour": "red"},
    ]
    expected_literal = "Input should be " + ", ".join(f"'{m}'" for m in MILESTONES[:-1])
    assert errors_of(client.post("/v1/recommendations", json={**ORDER, "events": bad})) == [
        ("events[1].event_at", "'not a date' is not an ISO 8601 date or datetime"),
        ("events[2].milestone", f"{expected_literal} or '{MILESTONES[-1]}'"),
        ("events[4].colour", "Extra inputs are not permitted"),
        (
            "events[3].event_at",
            "scan dated 2026-08-19, before the order's shipped_at (2026-08-20)",
        ),
    ]


def test_at_most_200_scans_per_order(client: TestClient) -> None:
    many = [{"event_at": "2026-08-21", "milestone": "picked_up"}] * 201
    assert errors_of(client.post("/v1/recommendations", json={**ORDER, "events": many})) == [
        ("events", "List should have at most 200 items after validation, not 201")
    ]


def test_batch_errors_name_the_order_and_the_scan(client: TestClient) -> None:
    orders = [
        {**ORDER, "order_id": "B-1"},
        {
            **{k: v for k, v in ORDER.items() if k != "as_of"},
            "order_id": "B-2",
            "events": [{"event_at": "2026-09-01", "milestone": "unknown_thing"}],
        },
    ]
    orders[0].pop("as_of")
    errors = errors_of(
        client.post("/v1/recommendations/batch", json={"as_of": AS_OF, "orders": orders})
    )
    assert [field for field, _ in errors] == ["orders[1].events[0].milestone"]


def test_http_answers_equal_batch_scoring_with_the_same_scans(
    client: TestClient, snapshot: LoadedModel
) -> None:
    """Each order scored over HTTP, with its scans, answers as ``score_raw`` does for the
    same orders and the same scans read as an events file."""
    orders = []
    for index, cut in enumerate(range(len(SCANS) + 1)):
        order = {k: v for k, v in ORDER.items() if k != "as_of"}
        order["order_id"] = f"P-{index}"
        if cut:
            order["events"] = SCANS[:cut]
        orders.append(order)
    response = client.post("/v1/recommendations/batch", json={"as_of": AS_OF, "orders": orders})
    assert response.status_code == 200, response.text
    served = response.json()["results"]

    frame = pd.DataFrame([{k: v for k, v in o.items() if k != "events"} for o in orders])
    events = pd.DataFrame(
        [{"order_id": o["order_id"], **event} for o in orders for event in o.get("events", [])]
    )
    validated = validate_events(events)
    scans = match_events(
        ScanTable.from_frame(validated.valid),
        frame["order_id"].to_numpy(dtype=object),
        pd.to_datetime(frame["shipped_at"]).to_numpy(),
    ).table
    batch = score_raw(
        frame, snapshot.model, snapshot.policy, pd.Timestamp(AS_OF).date(), scans=scans
    ).scored
    assert [r["order_id"] for r in served] == batch["order_id"].tolist()
    for row, (_, expected) in zip(served, batch.iterrows(), strict=True):
        assert row["action"] == expected["action"]
        assert row["p_late"] == expected["p_late"]
        assert row["p_late_after_extension"] == expected["p_late_after_extension"]
        assert ";".join(r["code"] for r in row["reasons"]) == expected["reasons"]
        assert row["last_milestone"] == (
            None if pd.isna(expected["last_milestone"]) else expected["last_milestone"]
        )
        days = expected["days_since_last_scan"]
        assert row["days_since_last_scan"] == (None if pd.isna(days) else int(days))
