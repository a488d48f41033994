"""One Settings object for the whole proxy, read from ``TOKENMETER_*`` environment variables.

Nothing reads the environment anywhere else. Validators refuse unsafe or meaningless values at
start, so a misconfigured proxy fails loudly before it serves a single request.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tokenmeter.db"


class Settings(BaseSettings):
    """Every knob of tokenmeter. README's configuration reference lists the same fields."""

    model_config = SettingsConfigDict(env_prefix="TOKENMETER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    database_url: str = DEFAULT_DATABASE_URL
    migrate_on_start: bool = True
    anthropic_upstream: str = "https://api.anthropic.com"
    openai_upstream: str = "https://api.openai.com"

    upstream_client: Literal["http11", "aiohttp", "httpx"] = "http11"
    connect_timeout_s: float = Field(default=10.0, gt=0)
    # Claude Code aborts a stream silent for 300 s; never cut one before the client does.
    read_timeout_s: float = Field(default=600.0, gt=0)
    max_in_flight: int = Field(default=1024, ge=1)

    # What a client may send, and how slowly (README: Limits). Claude Code's requests are a few
    # hundred KB; Anthropic itself refuses Messages requests over 32 MB.
    max_body_mb: int = Field(default=64, ge=1, le=4096)
    max_header_kb: int = Field(default=64, ge=1, le=1024)
    client_header_timeout_s: float = Field(default=30.0, gt=0)
    client_body_timeout_s: float = Field(default=60.0, gt=0)
    # Above the pools of the SDKs (httpx 5 s, Node's undici 4 s, aiohttp 15 s): the client
    # closes an idle connection first, so it never reuses one the proxy is closing.
    client_keepalive_timeout_s: float = Field(default=30.0, gt=0)

    key_salt: str = "tokenmeter-default-salt"
    key_map_file: Path | None = None
    prices_file: Path | None = None

    spool_dir: Path = Path("./tokenmeter-spool")
    recorder_batch_size: int = Field(default=1000, ge=1)
    recorder_flush_interval_s: float = Field(default=0.5, gt=0)
    recorder_queue_max: int = Field(default=100_000, ge=1)
    retention_days: int | None = Field(default=None, ge=1)

    metrics_per_user: bool = True
    # prometheus_client's own variable; `serve --workers N` sets it (a fresh temporary dir).
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )
    admin_token: str | None = None
    # USD per unit of each compensation currency, e.g. {"EUR": "1.08"}: the company's own rates.
    usd_per_currency: dict[str, Decimal] = Field(default_factory=dict)

    @field_validator("anthropic_upstream", "openai_upstream")
    @classmethod
    def _upstream_is_http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"upstream must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_is_supported(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "database_url must start with sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_is_strong(cls, value: str | None) -> str | None:
        if value is not None and len(value) < 16:
            raise ValueError("admin_token must be at least 16 characters")
        return value

    @field_validator("usd_per_currency")
    @classmethod
    def _rates_are_positive(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            if len(code) != 3 or not code.isupper() or not rate.is_finite() or rate <= 0:
                raise ValueError(f"usd_per_currency: {code!r}: {rate} must be a positive rate")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
