"""Model reload (admin key): a good artifact is swapped in; a tampered or missing one is
refused (409) while the previous model keeps serving. The security of the route itself
(scopes, model root, signatures) is tested in test_api_security.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from model.artifact import MANIFEST_FILE, MODEL_FILE, read_manifest
from service.api import create_app
from service.api.settings import ApiSettings

ADMIN_KEY = "admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ORDER = {
    "order_id": "R-1",
    "destination_country": "BR",
    "shipped_at": "2026-08-20",
    "deadline": "2026-11-04",
    "as_of": "2026-11-01",
}


def tamper(directory: Path) -> None:
    """Flip one byte of the model file (the manifest's checksum no longer matches)."""
    path = directory / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def relabel(directory: Path, version: str) -> None:
    """Give a copy of the artifact another version in its manifest (same verified file)."""
    manifest = read_manifest(directory)
    manifest["model_version"] = version
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest))


@pytest.fixture
def model_copy(trained_model_dir: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "model"
    shutil.copytree(trained_model_dir, directory)
    return directory


def version_served(client: TestClient) -> Any:
    response = client.post("/v1/recommendations", json=ORDER)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_reload_swaps_in_a_new_model_and_refuses_a_tampered_one(
    model_copy: Path, tmp_path: Path
) -> None:
    first = read_manifest(model_copy)["model_version"]
    with TestClient(create_app(ApiSettings(model_dir=model_copy, admin_key=ADMIN_KEY))) as client:
        assert client.get("/readyz").json() == {"status": "ready", "model_version": first}
        assert version_served(client) == first

        other = tmp_path / "other"
        shutil.copytree(model_copy, other)
        relabel(other, "20261101-second")
        response = client.post("/v1/admin/reload", json={"model_dir": str(other)}, headers=ADMIN)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "model_version": "20261101-second",
            "previous_model_version": first,
            "model_dir": str(other),
        }
        # The order served before was scored by the new model before the swap: its curve
        # cache holds that lane besides the probe's (white-box: the hazard's cache).
        warmed = client.app.state.holder.current.model.hazard._cache  # type: ignore[attr-defined]
        assert len(warmed) == 2
        assert version_served(client) == "20261101-second"

        tamper(other)
        refused = client.post(
            "/v1/admin/reload", headers=ADMIN
        )  # no body: the directory loaded last
        assert refused.status_code == 409
        assert refused.json()["detail"].startswith(
            f"reload refused, previous model kept: model artifact {other / MODEL_FILE}"
            " failed verification"
        )
        assert version_served(client) == "20261101-second"

        missing = client.post(
            "/v1/admin/reload", json={"model_dir": str(tmp_path / "none")}, headers=ADMIN
        )
        assert missing.status_code == 409
        assert missing.json()["detail"].startswith(
            f"reload refused, previous model kept: no model in {tmp_path / 'none'}"
        )
        nul = client.post("/v1/admin/reload", json={"model_dir": "bad\u0000dir"}, headers=ADMIN)
        assert nul.status_code == 403
        assert nul.json()["detail"].startswith("model directory bad\x00dir is not a usable path")
        assert version_served(client) == "20261101-second"

        metrics = client.get("/metrics").text
        assert 'advisor_model_reloads_total{outcome="ok"} 1.0' in metrics
        assert 'advisor_model_reloads_total{outcome="refused"} 2.0' in metrics
        assert 'advisor_model_reloads_total{outcome="forbidden"} 1.0' in metrics
        assert 'advisor_model_loaded{model_version="20261101-second"} 1.0' in metrics
        assert f'advisor_model_loaded{{model_version="{first}"}}' not in metrics


def test_reload_can_bring_a_server_without_model_to_ready(model_copy: Path, tmp_path: Path) -> None:
    settings = ApiSettings(model_dir=tmp_path / "empty", admin_key=ADMIN_KEY)
    with TestClient(create_app(settings)) as client:
        assert client.get("/readyz").status_code == 503
        response = client.post(
            "/v1/admin/reload", json={"model_dir": str(model_copy)}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        assert response.json()["previous_model_version"] is None
        assert client.get("/readyz").status_code == 200
        assert version_served(client) == read_manifest(model_copy)["model_version"]


def test_reload_rejects_unknown_fields(model_copy: Path) -> None:
    with TestClient(create_app(ApiSettings(model_dir=model_copy, admin_key=ADMIN_KEY))) as client:
        response = client.post("/v1/admin/reload", json={"dir": "x"}, headers=ADMIN)
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "dir"
