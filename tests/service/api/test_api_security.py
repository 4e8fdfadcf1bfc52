"""Security of the HTTP service (issue 10): the crafted-pickle reload never runs, whatever
key and directory; admin scope; model root; signatures on reload; request ids; JSON access
and admin logs that never hold a key, a body or an order field."""

from __future__ import annotations

import io
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from model.artifact import read_manifest, sign_artifact
from model.signing import SigningKeys
from service.api import create_app
from service.api.logs import AccessLineWriter, JsonFormatter
from service.api.middleware import ADMIN_DISABLED, API_KEY_NOT_ADMIN, INVALID_TOKEN
from service.api.settings import ApiSettings

API_KEY = "api-key-abcdefghijklmnop"
ADMIN_KEY = "admin-key-qrstuvwxyz012345"
SIGNING_KEY = "signing-key-" + "s" * 32
PREVIOUS_KEY = "previous-key-" + "p" * 32
API = {"Authorization": f"Bearer {API_KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ORDER_ID = "ORDER-PRIVATE-4711"
ORDER = {
    "order_id": ORDER_ID,
    "destination_country": "BR",
    "shipping_method": "PRIVATE-METHOD-X",
    "shipped_at": "2026-08-20",
    "deadline": "2026-11-04",
    "as_of": "2026-11-01",
}


@pytest.fixture
def root(trained_model_dir: Path, tmp_path: Path) -> Path:
    """A model root holding the serving model, signed with ``SIGNING_KEY``."""
    serving = Path(shutil.copytree(trained_model_dir, tmp_path / "models" / "serving"))
    sign_artifact(serving, SigningKeys(SIGNING_KEY.encode()))
    return serving.parent


def guarded_settings(root: Path, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "model_dir": root / "serving",
        "api_key": API_KEY,
        "admin_key": ADMIN_KEY,
        "signing_key": SIGNING_KEY,
        **overrides,
    }
    return ApiSettings(**values)


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    with TestClient(create_app(guarded_settings(root))) as test_client:
        yield test_client


def reload(client: TestClient, directory: Path | str, headers: dict[str, str]) -> Any:
    return client.post("/v1/admin/reload", json={"model_dir": str(directory)}, headers=headers)


def served_version(client: TestClient) -> Any:
    response = client.post("/v1/recommendations", json=ORDER, headers=API)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_crafted_pickle_never_runs_through_reload(
    client: TestClient, root: Path, tmp_path: Path, exploit: Callable[[Path, Path], Path]
) -> None:
    marker = tmp_path / "pwned"
    outside = exploit(tmp_path / "evil", marker)
    inside = exploit(root / "evil", marker)
    serving = read_manifest(root / "serving")["model_version"]

    # The ordinary key never reaches the route, wherever the directory is.
    for directory in (outside, inside):
        response = reload(client, directory, API)
        assert (response.status_code, response.json()) == (403, {"detail": API_KEY_NOT_ADMIN})
    # The admin key, a directory outside the root: refused before anything is read.
    response = reload(client, outside, ADMIN)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        f"model directory {outside} resolves to {outside}, outside the model root {root};"
        " only directories inside ADVISOR_MODEL_ROOT may be loaded"
    )
    # Inside the root but unsigned, with a signing key: refused before unpickling.
    response = reload(client, inside, ADMIN)
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"reload refused, previous model kept: model artifact in {inside} is not signed"
        " (no signature.json) and a signing key is configured; train it with"
        " ADVISOR_SIGNING_KEY set"
    )
    assert not marker.exists()
    assert served_version(client) == serving


def test_crafted_pickle_outside_the_root_never_runs_even_without_a_signing_key(
    root: Path, tmp_path: Path, exploit: Callable[[Path, Path], Path]
) -> None:
    marker = tmp_path / "pwned"
    outside = exploit(tmp_path / "evil", marker)
    (root / "escape").symlink_to(outside)
    settings = guarded_settings(root, signing_key=None)
    with TestClient(create_app(settings)) as client:
        for requested in (outside, "../evil", "serving/../../evil", "escape", "escape/"):
            response = reload(client, requested, ADMIN)
            assert response.status_code == 403, (requested, response.text)
            assert "outside the model root" in response.json()["detail"]
    assert not marker.exists()


def test_a_signed_model_inside_the_root_is_reloaded_and_the_previous_key_accepted(
    root: Path, trained_model_dir: Path
) -> None:
    old = Path(shutil.copytree(trained_model_dir, root / "old-key"))
    sign_artifact(old, SigningKeys(PREVIOUS_KEY.encode()))
    rotated = guarded_settings(root, signing_key=SIGNING_KEY, signing_key_previous=PREVIOUS_KEY)
    with TestClient(create_app(rotated)) as client:
        response = client.post("/v1/admin/reload", json={"model_dir": "old-key"}, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json()["model_dir"] == str(old)  # relative: taken under the root
    with TestClient(create_app(guarded_settings(root))) as client:  # old key rotated out
        response = reload(client, old, ADMIN)
        assert response.status_code == 409
        assert "signed with another key" in response.json()["detail"]


def test_a_tampered_signed_model_is_refused_on_reload(client: TestClient, root: Path) -> None:
    copy = Path(shutil.copytree(root / "serving", root / "copy"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["model_version"] = "20261101-forged"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    response = reload(client, copy, ADMIN)
    assert response.status_code == 409
    assert response.json()["detail"].endswith("changed after it was signed (tampered)")
    assert served_version(client) != "20261101-forged"


def test_admin_routes_are_disabled_without_an_admin_key(root: Path) -> None:
    settings = guarded_settings(root, admin_key=None)
    with TestClient(create_app(settings)) as client:
        for headers in ({}, API, ADMIN, {"Authorization": "Bearer anything"}):
            response = reload(client, root / "serving", headers)
            assert (response.status_code, response.json()) == (403, {"detail": ADMIN_DISABLED})
        assert "ADVISOR_ADMIN_KEY" in ADMIN_DISABLED
        assert served_version(client)  # the ordinary routes as before


def test_scopes_do_not_mix(client: TestClient, root: Path) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_KEY}):
        response = reload(client, root / "serving", headers)
        assert (response.status_code, response.json()) == (401, {"detail": INVALID_TOKEN})
        assert response.headers["www-authenticate"] == "Bearer"
    # The admin key is not an API key either.
    assert client.post("/v1/recommendations", json=ORDER, headers=ADMIN).status_code == 401
    assert reload(client, root / "serving", ADMIN).status_code == 200


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = {**API, "X-Request-ID": "client-id_1.2:3"}
    assert client.post("/v1/recommendations", json=ORDER, headers=given).headers[
        "x-request-id"
    ] == ("client-id_1.2:3")
    generated = [client.get("/healthz").headers["x-request-id"] for _ in range(2)]
    assert all(len(g) == 32 and int(g, 16) >= 0 for g in generated)
    assert generated[0] != generated[1]
    # Ids that would not be safe in a log line or a header are replaced, not echoed.
    for bad in ("has space", "x" * 129, "semi;colon", ""):
        echoed = client.get("/healthz", headers={"X-Request-ID": bad}).headers["x-request-id"]
        assert echoed != bad and len(echoed) == 32
    # Refusals carry one too.
    refused = client.post("/v1/recommendations", json=ORDER, headers={"X-Request-ID": "r-401"})
    assert (refused.status_code, refused.headers["x-request-id"]) == (401, "r-401")


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Everything the service logs (every level), formatted as ``serve`` formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("service")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_access_and_admin_logs_are_json_and_hold_no_secret(
    client: TestClient,
    root: Path,
    tmp_path: Path,
    log_lines: Callable[[], list[dict[str, Any]]],
    exploit: Callable[[Path, Path], Path],
) -> None:
    version = read_manifest(root / "serving")["model_version"]
    traced = {**API, "X-Request-ID": "trace-1"}
    assert client.post("/v1/recommendations", json=ORDER, headers=traced).status_code == 200
    single = {k: v for k, v in ORDER.items() if k != "as_of"}
    batch = {"as_of": "2026-11-01", "orders": [single, {**single, "order_id": ORDER_ID + "-2"}]}
    assert client.post("/v1/recommendations/batch", json=batch, headers=API).status_code == 200
    bad = {**ORDER, "deadline": "PRIVATE-BAD-DATE"}
    assert client.post("/v1/recommendations", json=bad, headers=API).status_code == 422
    assert client.post("/v1/recommendations", json=ORDER, headers=ADMIN).status_code == 401
    assert reload(client, exploit(tmp_path / "evil", tmp_path / "m"), ADMIN).status_code == 403
    assert reload(client, root / "serving", API).status_code == 403
    assert reload(client, root / "serving", ADMIN).status_code == 200

    lines = log_lines()
    access = [line for line in lines if line["logger"] == "service.api.access"]
    assert [(a["route"], a["status"], a["orders"]) for a in access] == [
        ("/v1/recommendations", 200, 1),
        ("/v1/recommendations/batch", 200, 2),
        ("/v1/recommendations", 422, None),
        ("unmatched", 401, None),  # refused before routing
        ("/v1/admin/reload", 403, None),
        ("unmatched", 403, None),
        ("/v1/admin/reload", 200, None),
    ]
    for line in access:
        assert set(line) == {
            "time", "level", "logger", "message", "request_id", "method", "route",
            "status", "latency_ms", "model_version", "orders",
        }  # fmt: skip
        assert line["level"] == "info" and line["latency_ms"] >= 0
    assert access[0]["request_id"] == "trace-1"
    assert access[0]["model_version"] == access[1]["model_version"] == version

    admin = [line for line in lines if line["logger"] == "service.api.admin"]
    assert [(a["level"], a["message"], a.get("outcome")) for a in admin] == [
        ("warning", "model reload", "forbidden"),
        ("warning", "admin request refused", "api_key"),
        ("warning", "model reload", "ok"),
    ]
    assert admin[0]["model_dir"] == str(tmp_path / "evil")
    assert admin[2]["model_dir"] == str(root / "serving")
    assert admin[2]["model_version"] == version
    assert {a["request_id"] for a in admin} <= {a["request_id"] for a in access}

    text = "\n".join(json.dumps(line) for line in lines)
    for secret in (API_KEY, ADMIN_KEY, SIGNING_KEY, "Bearer", ORDER_ID, "PRIVATE"):
        assert secret not in text, secret


class RecordingStream(io.StringIO):
    """A stream that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_access_line_writer_batches_whole_lines_and_matches_the_logger_shape() -> None:
    stream = RecordingStream()
    writer = AccessLineWriter(stream, interval=3600)  # only size and close() flush here
    odd = 'v"1\\\n\u00e9'  # quote, backslash, newline, non-ASCII: all escaped
    writer.write("id-0", "POST", "/v1/recommendations", 200, 1.234, odd, 3)
    assert stream.writes == []  # batched
    for k in range(1, 40):
        writer.write(f"id-{k}", "GET", "/healthz", 200, 0.5, None, None)
    writer.close()
    assert all(len(chunk) <= 4096 and chunk.endswith("\n") for chunk in stream.writes)
    assert len(stream.writes) >= 3  # ~40 lines of ~250 bytes: several writes, not 40
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == [f"id-{k}" for k in range(40)]
    record = logging.LogRecord("service.api.access", logging.INFO, "", 0, "request", (), None)
    record.fields = {
        "request_id": "id-0", "method": "POST", "route": "/v1/recommendations",
        "status": 200, "latency_ms": 1.23, "model_version": odd, "orders": 3,
    }  # fmt: skip
    logged = json.loads(JsonFormatter().format(record))
    written = lines[0]
    assert set(written) == set(logged)
    assert {k: v for k, v in written.items() if k != "time"} == {
        k: v for k, v in logged.items() if k != "time"
    }
    assert stream.getvalue().isascii()


def test_access_line_writer_flushes_on_its_own() -> None:
    stream = RecordingStream()
    writer = AccessLineWriter(stream, interval=0.05)
    writer.write("id-1", "GET", "/healthz", 200, 0.1, None, None)
    deadline = time.monotonic() + 5
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.close()
    assert len(stream.writes) == 1 and json.loads(stream.writes[0])["request_id"] == "id-1"


def test_serving_apps_write_access_lines_to_stderr(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with TestClient(create_app(guarded_settings(root, access_log_stderr=True))) as client:
        headers = {**API, "X-Request-ID": "to-stderr"}
        assert client.post("/v1/recommendations", json=ORDER, headers=headers).status_code == 200
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(a["request_id"], a["route"], a["orders"]) for a in lines] == [
        ("to-stderr", "/v1/recommendations", 1)
    ]
    assert lines[0]["model_version"] == read_manifest(root / "serving")["model_version"]
