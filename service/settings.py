"""Typed settings from ``ADVISOR_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.signing import MIN_KEY_CHARS, SigningKeys

__all__ = ["Settings", "env_name", "get_settings"]


def env_name(field: str) -> str:
    """The environment variable of a setting: ``signing_key`` -> ``ADVISOR_SIGNING_KEY``."""
    return f"ADVISOR_{field.upper()}"


class Settings(BaseSettings):
    """Every setting has a documented default; CLI flags override them per call."""

    # hide_input_in_errors: a bad value (a key too short) is never echoed in an error.
    model_config = SettingsConfigDict(
        env_prefix="ADVISOR_", protected_namespaces=(), hide_input_in_errors=True
    )

    model_dir: Path = Field(Path("artifacts/model"), description="Model artifact directory.")
    policy_file: Path | None = Field(None, description="Policy TOML; unset = defaults.")
    data_dir: Path = Field(
        Path("artifacts/data"), description="Where the default history is generated."
    )
    default_history_rows: int = Field(120_000, ge=1_000)
    api_key: SecretStr | None = Field(None, description="Bearer key for /v1 routes; unset = open.")
    max_batch: int = Field(1000, ge=1, le=100_000)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    signing_key: SecretStr | None = Field(
        None,
        description="HMAC key that signs trained artifacts; when set, every load verifies the"
        " signature before unpickling and refuses unsigned or mis-signed artifacts.",
    )
    signing_key_previous: SecretStr | None = Field(
        None, description="The key being rotated out: still accepted when verifying."
    )

    @field_validator("signing_key", "signing_key_previous")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_KEY_CHARS:
            raise ValueError(
                f"needs at least {MIN_KEY_CHARS} characters"
                " (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @model_validator(mode="after")
    def _previous_needs_current(self) -> Settings:
        if self.signing_key_previous is not None and self.signing_key is None:
            raise ValueError(
                "ADVISOR_SIGNING_KEY_PREVIOUS is set without ADVISOR_SIGNING_KEY: set the new"
                " key too (the previous one is only accepted beside it)"
            )
        return self

    def signing_keys(self) -> SigningKeys | None:
        """The keys that sign and verify artifacts; None when signing is off."""
        if self.signing_key is None:
            return None
        previous = self.signing_key_previous
        return SigningKeys(
            current=self.signing_key.get_secret_value().encode(),
            previous=previous.get_secret_value().encode() if previous is not None else None,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache or override the dependency)."""
    return Settings()
