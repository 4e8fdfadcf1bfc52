"""Settings of the HTTP service: the shared ``ADVISOR_*`` settings plus a few of its own."""

from __future__ import annotations

from pydantic import Field

from service.settings import Settings

__all__ = ["ApiSettings"]


class ApiSettings(Settings):
    """:class:`~service.settings.Settings` plus limits and tuning of the HTTP service."""

    max_body_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest request body accepted; larger ones get 413.",
    )
    batch_window_ms: float = Field(
        1.0,
        ge=0,
        le=50,
        description="How long single-order requests wait to be scored together (micro-batch)"
        " beyond the time the previous batch takes anyway.",
    )

    tune_gc: bool = Field(
        False,
        description="Freeze startup objects and collect garbage less often (on in `serve`).",
    )

    @classmethod
    def from_settings(cls, settings: Settings | None) -> ApiSettings:
        """``settings`` as :class:`ApiSettings` (read from the environment when None)."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        return cls(**settings.model_dump())
