"""HTTP contract (TestClient, small model through a dependency override): routes, bodies,
422 per field, 413 limits, malformed input never a 500, countries, manifest, auth, metrics."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from data.generate import DEFAULT_AS_OF as AS_OF
from model.schema import iso_country_codes
from service.api import create_app
from service.api.state import LoadedModel
from service.policy import REASON_MESSAGES
from service.settings import Settings

ORDER: dict[str, Any] = {
    "order_id": "A-1",
    "destination_country": "BR",
    "shipping_method": "cainiao_super_economy",
    "shipped_at": "2026-08-20",
    "deadline": "2026-11-04",
    "as_of": AS_OF.isoformat(),
}
FIELDS = {
    "order_id",
    "action",
    "extend_by_days",
    "new_deadline",
    "days_remaining",
    "p_late",
    "p_late_after_extension",
    "respond_by",
    "reasons",
    "model_version",
    "last_milestone",
    "days_since_last_scan",
}


def errors_of(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return [(e["field"], e["msg"]) for e in response.json()["detail"]]


def test_one_order_gets_every_scored_field(client: TestClient, snapshot: LoadedModel) -> None:
    response = client.post("/v1/recommendations", json=ORDER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == FIELDS
    assert body["order_id"] == "A-1"
    assert body["days_remaining"] == 3  # deadline 2026-11-04, as of 2026-11-01
    assert body["model_version"] == snapshot.model_version
    assert 0.0 <= body["p_late_after_extension"] <= body["p_late"] <= 1.0
    codes = [r["code"] for r in body["reasons"]]
    assert codes[0] == "within_5_days"
    for reason in body["reasons"][1:]:
        assert reason["message"] == REASON_MESSAGES[reason["code"]]
    if body["action"] == "extend":
        assert (body["extend_by_days"], body["new_deadline"]) == (30, "2026-12-04")
    else:
        assert (body["extend_by_days"], body["new_deadline"]) == (0, None)


def test_optional_fields_may_be_null_and_dispute_gives_respond_by(client: TestClient) -> None:
    order = {
        **ORDER,
        "shipping_method": None,
        "delivered_at": None,
        "extensions": None,
        "destination_region": None,
        "weight_g": None,
        "dispute_opened_at": "2026-10-30",
    }
    body = client.post("/v1/recommendations", json=order).json()
    assert body["action"] == "respond_to_dispute"
    assert body["respond_by"] == "2026-11-04"
    assert body["reasons"][0] == {
        "code": "dispute_open",
        "message": REASON_MESSAGES["dispute_open"],
    }


def test_dates_accept_date_times_in_utc(client: TestClient) -> None:
    """A date-time with an offset counts by its UTC date, as in the batch path."""
    late_evening = {**ORDER, "deadline": "2026-11-03T22:30:00-05:00"}  # 2026-11-04 in UTC
    assert client.post("/v1/recommendations", json=late_evening).json()["days_remaining"] == 3


def test_unseen_valid_country_is_answered_with_the_reason(
    client: TestClient, snapshot: LoadedModel
) -> None:
    unseen = sorted(iso_country_codes() - set(snapshot.lanes))[0]
    body = client.post("/v1/recommendations", json={**ORDER, "destination_country": unseen})
    assert body.status_code == 200, body.text
    assert "unseen_country" in [r["code"] for r in body.json()["reasons"]]


def test_each_failing_field_is_named_with_its_reason(client: TestClient) -> None:
    bad = {
        "order_id": "A-2",
        "destination_country": "XX",
        "shipped_at": "2026-13-01",
        "deadline": "2026-10-01",
        "extensions": -1,
        "weight_g": -5,
        "colour": "red",
        "as_of": "2026-11-01",
    }
    assert errors_of(client.post("/v1/recommendations", json=bad)) == [
        ("destination_country", "'XX' is not an ISO 3166-1 alpha-2 country code"),
        ("shipped_at", "'2026-13-01' is not an ISO 8601 date"),
        ("extensions", "negative extensions"),
        ("weight_g", "negative value"),
        ("colour", "Extra inputs are not permitted"),
    ]


def test_date_order_errors_are_located_at_their_fields(client: TestClient) -> None:
    bad = {
        **ORDER,
        "shipped_at": "2026-11-10",
        "deadline": "2026-11-05",
        "dispute_opened_at": "2026-11-01",
        "extensions": -2,
    }
    assert errors_of(client.post("/v1/recommendations", json=bad)) == [
        ("extensions", "negative extensions"),
        ("deadline", "deadline before shipped_at"),
        ("dispute_opened_at", "dispute_opened_at before shipped_at"),
        ("shipped_at", "as_of (2026-11-01) before shipped_at"),
    ]


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"order_id": 17}, ("order_id", "Input should be a valid string")),
        ({"order_id": "  "}, ("order_id", "String should have at least 1 character")),
        (
            {"destination_country": ["BR"]},
            ("destination_country", "Input should be a valid string"),
        ),
        ({"shipped_at": 20260820}, ("shipped_at", "must be an ISO 8601 date string (YYYY-MM-DD)")),
        ({"deadline": "04/11/2026"}, ("deadline", "'04/11/2026' is not an ISO 8601 date")),
        (
            {"deadline": "9999-01-01"},
            ("deadline", "date out of the supported range 1900-01-01 to 2199-12-31"),
        ),
        (
            {"extensions": 1.5},
            ("extensions", "Input should be a valid integer"),
        ),
        ({"extensions": 10**30}, ("extensions", "Input should be less than or equal to 10000")),
        ({"extensions": True}, ("extensions", "Input should be a valid integer")),
        ({"extensions": "2"}, ("extensions", "Input should be a valid integer")),
        ({"declared_value_usd": False}, ("declared_value_usd", "Input should be a valid number")),
        ({"weight_g": {"a": {"b": [1]}}}, ("weight_g", "Input should be a valid number")),
        ({"as_of": "yesterday"}, ("as_of", "'yesterday' is not an ISO 8601 date")),
    ],
)
def test_wrong_types_and_values(
    client: TestClient, patch: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert errors_of(client.post("/v1/recommendations", json={**ORDER, **patch})) == [expected]


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("1e400", "Input should be a finite number"),
        ("-1e400", "Input should be a finite number"),
        ("Infinity", "Input should be a finite number"),
        ("NaN", "Input should be a finite number"),
        ("9" * 400, "Input should be a valid number"),
    ],
)
def test_huge_and_non_finite_numbers(client: TestClient, number: str, message: str) -> None:
    body = json.dumps(ORDER)[:-1] + f', "weight_g": {number}}}'
    response = client.post(
        "/v1/recommendations", content=body, headers={"content-type": "application/json"}
    )
    assert errors_of(response) == [("weight_g", message)]


def test_missing_required_fields(client: TestClient) -> None:
    assert errors_of(client.post("/v1/recommendations", json={"as_of": "2026-11-01"})) == [
        (name, "Field required")
        for name in ("order_id", "destination_country", "shipped_at", "deadline")
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe{not utf-8",
        b'{"order_id": "\xc3\x28"}',
        b"{",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        b"[1, 2, 3]",
        b"null",
        b'"text"',
        b"",
    ],
    ids=[
        "bad-utf8",
        "bad-utf8-in-string",
        "truncated",
        "deep-array",
        "deep-object",
        "array",
        "null",
        "string",
        "empty",
    ],
)
@pytest.mark.parametrize("path", ["/v1/recommendations", "/v1/recommendations/batch"])
def test_malformed_bodies_are_422(client: TestClient, content: bytes, path: str) -> None:
    response = client.post(path, content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_batch_keeps_input_order_and_locates_errors_by_index(client: TestClient) -> None:
    orders = [{**ORDER, "order_id": f"B-{i}"} for i in range(5)]
    for order in orders:
        order.pop("as_of")
    response = client.post(
        "/v1/recommendations/batch", json={"as_of": "2026-11-01", "orders": orders}
    )
    assert response.status_code == 200, response.text
    assert [r["order_id"] for r in response.json()["results"]] == [f"B-{i}" for i in range(5)]

    orders[1] = {**orders[1], "deadline": "2026-11-31"}
    orders[3] = {**orders[3], "shipped_at": "2026-11-20", "deadline": "2026-11-30"}
    orders[4] = {**orders[4], "order_id": "B-0", "unknown": 1}
    response = client.post(
        "/v1/recommendations/batch", json={"as_of": "2026-11-01", "orders": orders}
    )
    assert errors_of(response) == [
        ("orders[1].deadline", "'2026-11-31' is not an ISO 8601 date"),
        ("orders[4].unknown", "Extra inputs are not permitted"),
        ("orders[3].shipped_at", "as_of (2026-11-01) before shipped_at"),
        ("orders[4].order_id", "duplicate order_id (first seen at orders[0])"),
    ]


def test_empty_batch_gives_no_results(client: TestClient) -> None:
    response = client.post("/v1/recommendations/batch", json={"orders": []})
    assert (response.status_code, response.json()) == (200, {"results": []})


def test_batch_over_the_limit_is_413(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory(max_batch=3)) as small:
        orders = [{k: v for k, v in ORDER.items() if k != "as_of"} for _ in range(4)]
        response = small.post("/v1/recommendations/batch", json={"orders": orders})
        assert response.status_code == 413
        assert response.json() == {
            "detail": "batch of 4 orders is over the limit of 3 (ADVISOR_MAX_BATCH); split it"
        }
        ok = small.post("/v1/recommendations/batch", json={"orders": orders[:3]})
        assert ok.status_code == 422  # three copies of one order_id: within the limit, checked


def test_oversized_body_is_413(app_factory: Callable[..., FastAPI]) -> None:
    expected = {"detail": "request body larger than the limit of 2,048 bytes"}
    with TestClient(app_factory(max_body_bytes=2048)) as small:
        padded = {**ORDER, "order_id": "x" * 150, "shipping_method": "y" * 3000}
        response = small.post("/v1/recommendations", json=padded)
        assert (response.status_code, response.json()) == (413, expected)

        def chunks() -> Any:  # no Content-Length: the limit applies while streaming
            for _ in range(10):
                yield b" " * 1000

        streamed = small.post(
            "/v1/recommendations", content=chunks(), headers={"content-type": "application/json"}
        )
        assert (streamed.status_code, streamed.json()) == (413, expected)


def test_countries_list_and_one(client: TestClient, snapshot: LoadedModel) -> None:
    listed = client.get("/v1/countries").json()
    assert listed["model_version"] == snapshot.model_version
    countries = listed["countries"]
    assert {c["country"] for c in countries} == set(snapshot.model.lanes.index)
    shipments = [c["shipments"] for c in countries]
    assert shipments == sorted(shipments, reverse=True)

    brazil = client.get("/v1/countries/br").json()
    lane = snapshot.model.lanes.loc["BR"]
    assert brazil["country"] == "BR"
    assert brazil["shipments"] == int(lane["shipments"])
    assert brazil["p90_transit_days"] == pytest.approx(float(lane["p90_transit_days"]))
    assert brazil["structural_lag"] is bool(lane["structural_lag"])


def test_country_errors(client: TestClient, snapshot: LoadedModel) -> None:
    assert errors_of(client.get("/v1/countries/QQ")) == [
        ("path.code", "'QQ' is not an ISO 3166-1 alpha-2 country code")
    ]
    unseen = sorted(iso_country_codes() - set(snapshot.lanes))[0]
    response = client.get(f"/v1/countries/{unseen}")
    assert response.status_code == 404
    assert response.json()["detail"].startswith(f"no shipments to {unseen} in the history")


def test_model_route_gives_the_manifest(client: TestClient, snapshot: LoadedModel) -> None:
    assert client.get("/v1/model").json() == json.loads(json.dumps(snapshot.manifest))


def test_health_readiness_and_no_model(client: TestClient, tmp_path: Path) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    with TestClient(create_app(Settings(model_dir=tmp_path / "empty"))) as bare:
        ready = bare.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith(f"no model in {tmp_path / 'empty'}")
        response = bare.post("/v1/recommendations", json=ORDER)
        assert (response.status_code, response.json()) == (
            503,
            {"detail": "no model loaded yet; see GET /readyz"},
        )


def test_auth_guards_v1_only(app_factory: Callable[..., FastAPI]) -> None:
    with TestClient(app_factory(api_key="s3cret-key")) as guarded:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
            response = guarded.post("/v1/recommendations", json=ORDER, headers=headers)
            assert response.status_code == 401
            assert response.json() == {"detail": "missing or invalid bearer token"}
            assert response.headers["www-authenticate"] == "Bearer"
            assert guarded.get("/v1/countries", headers=headers).status_code == 401
        good = {"Authorization": "Bearer s3cret-key"}
        assert guarded.post("/v1/recommendations", json=ORDER, headers=good).status_code == 200
        assert guarded.get("/v1/model", headers=good).status_code == 200
        for open_path in ("/healthz", "/metrics", "/openapi.json"):
            assert guarded.get(open_path).status_code == 200


def test_metrics_count_routes_statuses_actions_and_model(
    app_factory: Callable[..., FastAPI], snapshot: LoadedModel
) -> None:
    app = app_factory()
    with TestClient(app) as fresh:
        action = fresh.post("/v1/recommendations", json=ORDER).json()["action"]
        fresh.post("/v1/recommendations", json={**ORDER, "deadline": "x"})
        fresh.get("/no/such/path")
        app.state.metrics.set_model(snapshot.model_version)
        text = fresh.get("/metrics").text
    assert (
        'advisor_http_requests_total{method="POST",route="/v1/recommendations",status="200"} 1.0'
        in text
    )
    assert (
        'advisor_http_requests_total{method="POST",route="/v1/recommendations",status="422"} 1.0'
        in text
    )
    assert 'advisor_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert f'advisor_recommendations_total{{action="{action}"}} 1.0' in text
    assert f'advisor_model_loaded{{model_version="{snapshot.model_version}"}} 1.0' in text
    assert 'advisor_http_request_duration_seconds_count{route="/v1/recommendations"} 2.0' in text
    # Each app has its own registry: a second app starts from zero.
    with TestClient(app_factory()) as other:
        assert "/v1/recommendations" not in other.get("/metrics").text


def test_openapi_documents_every_route_with_examples(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    routes = {
        ("/v1/recommendations", "post"),
        ("/v1/recommendations/batch", "post"),
        ("/v1/countries", "get"),
        ("/v1/countries/{code}", "get"),
        ("/v1/model", "get"),
        ("/v1/admin/reload", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    }
    found = {(path, method) for path, ops in schema["paths"].items() for method in ops}
    assert found == routes
    text = json.dumps(schema)
    for name in ("RecommendationRequest", "BatchRequest", "Recommendation", "CountryLag"):
        assert schema["components"]["schemas"][name].get("examples"), name
    assert '"example"' in text
    assert schema["paths"]["/v1/recommendations"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert client.get("/docs").status_code == 200
