"""The real server: `window-advisor serve` under uvicorn in a subprocess on a free loopback
port, spoken to with httpx (auth, scoring, reload, tampered reload); and the training of the
default model when none is in place."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console

from model.artifact import MANIFEST_FILE, MODEL_FILE, load_model, read_manifest, sign_artifact
from model.signing import SigningKeys
from model.train import TrainingConfig
from service.api.settings import ApiSettings
from service.cli.serve import ensure_model

KEY = "test-key-0123456789"
ADMIN_KEY = "test-admin-key-9876543210"
SIGNING_KEY = "test-signing-key-" + "s" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
SIGNING = SigningKeys(SIGNING_KEY.encode())
ORDER = {
    "order_id": "S-1",
    "destination_country": "BR",
    "shipped_at": "2026-08-20",
    "deadline": "2026-11-04",
    "as_of": "2026-11-01",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(trained_model_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running server (its base URL) on a copy of the small model (its directory)."""
    model_dir = tmp_path / "model"
    shutil.copytree(trained_model_dir, model_dir)
    sign_artifact(model_dir, SIGNING)
    port = free_port()
    env = {
        **os.environ,
        "ADVISOR_API_KEY": KEY,
        "ADVISOR_ADMIN_KEY": ADMIN_KEY,
        "ADVISOR_SIGNING_KEY": SIGNING_KEY,
        "OMP_NUM_THREADS": "1",
    }
    log = (tmp_path / "server.log").open("w")
    command = [sys.executable, "-m", "service.cli", "serve", "--model", str(model_dir)]
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        yield base, model_dir
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "server.log").read_text()
    assert f"on http://127.0.0.1:{port}" in output
    assert "Traceback" not in output
    for secret in (KEY, ADMIN_KEY, SIGNING_KEY, "Bearer"):
        assert secret not in output


def served_version(http: httpx.Client) -> Any:
    response = http.post("/v1/recommendations", json=ORDER, headers=AUTH)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def test_real_server_auth_scoring_and_reload(served: tuple[str, Path], tmp_path: Path) -> None:
    base, model_dir = served
    log_path = tmp_path / "server.log"
    first = read_manifest(model_dir)["model_version"]
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/metrics").status_code == 200
        assert http.post("/v1/recommendations", json=ORDER).status_code == 401
        wrong = {"Authorization": "Bearer not-the-key"}
        assert http.get("/v1/model", headers=wrong).status_code == 401
        assert http.get("/v1/model", headers=AUTH).json()["model_version"] == first
        assert served_version(http) == first

        second = tmp_path / "second"
        shutil.copytree(model_dir, second)
        manifest = read_manifest(second)
        manifest["model_version"] = "20261101-second"
        (second / MANIFEST_FILE).write_text(json.dumps(manifest))
        body = {"model_dir": str(second)}
        assert http.post("/v1/admin/reload", json=body).status_code == 401
        assert http.post("/v1/admin/reload", json=body, headers=AUTH).status_code == 403
        edited = http.post("/v1/admin/reload", json=body, headers=ADMIN)
        assert edited.status_code == 409  # the manifest changed after signing
        assert edited.json()["detail"].endswith("changed after it was signed (tampered)")
        sign_artifact(second, SIGNING)  # as the team would, having the key
        traced = {**ADMIN, "X-Request-ID": "reload-1"}
        reloaded = http.post("/v1/admin/reload", json=body, headers=traced)
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.headers["x-request-id"] == "reload-1"
        assert served_version(http) == "20261101-second"

        blob = bytearray((second / MODEL_FILE).read_bytes())
        blob[100] ^= 0x01
        (second / MODEL_FILE).write_bytes(bytes(blob))
        refused = http.post("/v1/admin/reload", headers=ADMIN)
        assert refused.status_code == 409
        assert "failed signature verification" in refused.json()["detail"]
        assert served_version(http) == "20261101-second"
        assert http.get("/readyz").json()["model_version"] == "20261101-second"

    # The server's stderr: JSON lines, one access line per request (written in batches, at
    # least every quarter second), admin actions as warnings (rich's console lines before
    # uvicorn starts are not JSON).
    deadline = time.monotonic() + 10
    while True:
        text = log_path.read_text()
        complete = text[: text.rfind("\n") + 1]  # a batch may be half written
        lines = [json.loads(line) for line in complete.splitlines() if line[:1] == "{"]
        access = [line for line in lines if line["logger"] == "service.api.access"]
        answered = [(a["route"], a["status"]) for a in access if a["route"] != "/readyz"]
        if len(answered) >= 13 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert answered == [
        ("/healthz", 200), ("/metrics", 200), ("unmatched", 401), ("unmatched", 401),
        ("/v1/model", 200), ("/v1/recommendations", 200), ("unmatched", 401),
        ("unmatched", 403), ("/v1/admin/reload", 409), ("/v1/admin/reload", 200),
        ("/v1/recommendations", 200), ("/v1/admin/reload", 409), ("/v1/recommendations", 200),
    ]  # fmt: skip
    assert [a["request_id"] for a in access if a["route"] == "/v1/admin/reload"][1] == "reload-1"
    reloads = [line for line in lines if line.get("message") == "model reload"]
    assert [(r["level"], r["outcome"], r["request_id"]) for r in reloads][1] == (
        "warning", "ok", "reload-1",
    )  # fmt: skip


def test_serve_trains_the_default_model_when_none_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model.train

    real_train = model.train.train_model
    small = TrainingConfig(hazard={"max_iter": 20, "max_person_days": 60_000})
    monkeypatch.setattr(
        model.train,
        "train_model",
        lambda valid, as_of, scans=None: real_train(valid, as_of, small, scans=scans),
    )
    settings = ApiSettings(
        data_dir=tmp_path / "data", default_history_rows=2000, signing_key=SIGNING_KEY
    )
    stderr = io.StringIO()
    console = Console(file=stderr, width=200)
    target = tmp_path / "model"
    ensure_model(target, settings, console)
    _, manifest = load_model(target, keys=SIGNING)  # signed, since a key is configured
    assert stderr.getvalue().splitlines() == [
        f"no model in {target}: training the default model from the bundled history"
        " (2,000 shipments) before serving",
        f"trained model {manifest['model_version']} saved to {target}",
    ]
    assert manifest["data"]["rows"] == 2000
    assert manifest["data"]["source"] == str(tmp_path / "data" / "default_history_2000.parquet")

    ensure_model(target, settings, console)  # a model is there now: nothing more is said
    assert len(stderr.getvalue().splitlines()) == 2
