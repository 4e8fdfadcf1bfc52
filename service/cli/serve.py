"""``window-advisor serve``: run the HTTP service with uvicorn (127.0.0.1 unless told).

With no model in place, it first trains the default model from the bundled history (signed
when ADVISOR_SIGNING_KEY is set) and says so on stderr; a model that fails verification
(with a signing key: also an unsigned or mis-signed one) stops it with a one-line error.
Logs are JSON lines on stderr (:mod:`service.api.logs`).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from service.cli.common import console, friendly_errors

__all__ = ["ensure_model", "exposure_warnings", "serve_command"]


def ensure_model(directory: Path, settings: Any, console: Any) -> None:
    """Train and save the default model into ``directory`` unless one is there already."""
    from model.artifact import read_manifest
    from model.errors import ModelNotFoundError
    from service.history import train_and_save

    try:
        read_manifest(directory)
        return
    except ModelNotFoundError:
        pass
    console.print(
        f"no model in {directory}: training the default model from the bundled history"
        f" ({settings.default_history_rows:,} shipments) before serving",
        highlight=False,
        soft_wrap=True,
    )
    trained = train_and_save(None, directory, settings, status=console.status)
    console.print(
        f"trained model {trained.manifest['model_version']} saved to {directory}",
        highlight=False,
        soft_wrap=True,
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


def exposure_warnings(settings: Any) -> list[str]:
    """What to warn about when binding an address other machines can reach."""
    if is_loopback(settings.host):
        return []
    warnings = [f"binding {settings.host}, reachable from other machines"]
    if settings.api_key is None:
        warnings.append("no ADVISOR_API_KEY: every /v1 route is open; set one to require a key")
    if settings.signing_key is None:
        warnings.append(
            "no ADVISOR_SIGNING_KEY: model artifacts are loaded unsigned, so whoever can write"
            " a model directory can run code in this service; set one and retrain"
        )
    return warnings


@friendly_errors
def serve_command(
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model directory (default: $ADVISOR_MODEL_DIR or ./artifacts/model);"
            " trained from the bundled history first when empty.",
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Interface to bind (default: $ADVISOR_HOST or 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="TCP port (default: $ADVISOR_PORT or 8000)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes, each with its own model copy (default: $ADVISOR_WORKERS or 1).",
        ),
    ] = None,
) -> None:
    """Serve recommendations over HTTP (FastAPI + uvicorn); OpenAPI docs at /docs."""
    import uvicorn

    from service.api.app import create_app
    from service.api.logs import LOGGING_CONFIG
    from service.api.settings import ApiSettings
    from service.api.state import load_snapshot
    from service.policy import load_policy

    overrides: dict[str, Any] = {"tune_gc": True, "access_log_stderr": True}
    if model is not None:
        overrides["model_dir"] = model
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if workers is not None:
        overrides["workers"] = workers
    settings = ApiSettings(**overrides)
    policy = load_policy(settings.policy_file)
    ensure_model(settings.model_dir, settings, console)
    with console.status(f"loading the model from {settings.model_dir}"):
        # Verified once, here (its signature too, with a signing key): a refused artifact
        # stops serve before it binds.
        loaded = load_snapshot(settings.model_dir, policy, keys=settings.signing_keys())
    for warning in exposure_warnings(settings):
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
    console.print(
        f"serving model {loaded.model_version} on http://{settings.host}:{settings.port}"
        f" with {settings.workers} worker(s); docs at /docs",
        highlight=False,
        soft_wrap=True,
    )
    if settings.workers == 1:
        uvicorn.run(
            create_app(settings, loaded=loaded),
            host=settings.host,
            port=settings.port,
            log_config=LOGGING_CONFIG,
            access_log=False,
        )
        return
    # Several workers import the app themselves: hand them the settings through the
    # environment (each loads and verifies the model in its own lifespan).
    for name, value in overrides.items():
        os.environ[f"ADVISOR_{name.upper()}"] = str(value)
    uvicorn.run(
        "service.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=LOGGING_CONFIG,
        access_log=False,
    )
