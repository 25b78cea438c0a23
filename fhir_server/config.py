"""Server settings from the environment (prefix `FHIR_SERVER_`), behind a cached provider.

Nothing is read at import time: `get_settings()` builds the settings on first use, and tests
build their own `Settings(...)` and pass it to `create_app`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration.

    Attributes:
        database_url: `sqlite:///path/to/file.db` (default `sqlite:///./data/fhir.db`),
            `sqlite:///:memory:` or `mongodb://host/dbname`.
        base_url: the public FHIR base URL used in links and `Location` headers; when empty it
            is derived from each request (`http://host:port/fhir`).
        max_body_bytes: the largest request body accepted (default 10 MB) -> 413 beyond.
        default_count / max_count: `_count` default and ceiling for searches.
        default_timezone: IANA zone used for dates without an offset.
    """

    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    database_url: str = "sqlite:///./data/fhir.db"
    base_url: str = ""
    max_body_bytes: int = 10 * 1024 * 1024
    default_count: int = 20
    max_count: int = 1000
    default_timezone: str = "UTC"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first call."""
    return Settings()
