"""Settings of the HTTP service: the shared ``ADVISOR_*`` settings plus a few of its own."""

from __future__ import annotations

import hmac
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from service.settings import Settings

__all__ = ["MIN_ADMIN_KEY_CHARS", "ApiSettings"]

MIN_ADMIN_KEY_CHARS = 16


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

    admin_key: SecretStr | None = Field(
        None,
        description="Bearer key of the /v1/admin routes (never granted by ADVISOR_API_KEY);"
        " unset = admin routes disabled (403).",
    )
    model_root: Path | None = Field(
        None,
        description="A reload may only name a directory inside this one (after `..` and"
        " symlinks); default: the parent of the model directory.",
    )

    access_log_stderr: bool = Field(
        False,
        description="Write the JSON access lines straight to stderr, in batches (on in"
        " `serve`); off: they go to the `service.api.access` logger.",
    )
    tune_gc: bool = Field(
        False,
        description="Freeze startup objects and collect garbage less often (on in `serve`).",
    )

    @field_validator("admin_key")
    @classmethod
    def _admin_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"needs at least {MIN_ADMIN_KEY_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _admin_key_is_its_own(self) -> ApiSettings:
        if (
            self.admin_key is not None
            and self.api_key is not None
            and hmac.compare_digest(
                self.admin_key.get_secret_value().encode(), self.api_key.get_secret_value().encode()
            )
        ):
            raise ValueError(
                "ADVISOR_ADMIN_KEY equals ADVISOR_API_KEY: the admin key must be a key of its own"
            )
        return self

    def resolved_model_root(self) -> Path:
        """Where reloads may load from: ``model_root``, else the model directory's parent."""
        root = self.model_root if self.model_root is not None else self.model_dir.parent
        return root.resolve()

    @classmethod
    def from_settings(cls, settings: Settings | None) -> ApiSettings:
        """``settings`` as :class:`ApiSettings` (read from the environment when None)."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        return cls(**settings.model_dump())
