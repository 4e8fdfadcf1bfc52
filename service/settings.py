"""Typed settings from ``ADVISOR_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Every setting has a documented default; CLI flags override them per call."""

    model_config = SettingsConfigDict(env_prefix="ADVISOR_", protected_namespaces=())

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (tests clear the cache or override the dependency)."""
    return Settings()
