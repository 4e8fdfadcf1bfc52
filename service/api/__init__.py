"""The HTTP recommendation service (FastAPI): ``create_app`` builds it, ``serve`` runs it."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:  # importing a submodule need not build the app module
    if name == "create_app":
        from service.api.app import create_app

        return create_app
    raise AttributeError(name)
