"""One Settings object for the whole proxy, read from ``TOKENMETER_*`` environment variables.

Nothing reads the environment anywhere else. Validators refuse unsafe or meaningless values at
start, so a misconfigured proxy fails loudly before it serves a single request.

A few settings also answer to the standard names other tools use, below their ``TOKENMETER_``
name: ``PROMETHEUS_MULTIPROC_DIR``; ``SSL_CERT_FILE`` for ``ca_bundle``; and ``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY`` for the egress proxy, read by ``urllib.request``'s own rules (the
lower-case name wins over the upper-case one, and an empty lower-case one unsets it), which
pydantic's case-insensitive aliases cannot express: ``_StandardProxyVariables`` does it.
"""

from __future__ import annotations

import ssl
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, FilePath, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from proxy.egress import NoProxy, parse_proxy_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tokenmeter.db"


class Settings(BaseSettings):
    """Every knob of tokenmeter. README's configuration reference lists the same fields."""

    # Errors name the setting and the reason, never its value: a proxy URL, the database URL
    # and the admin token may hold secrets, and a start-up error ends up in logs.
    model_config = SettingsConfigDict(
        env_prefix="TOKENMETER_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

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
    # The egress proxy: TOKENMETER_HTTPS_PROXY, else https_proxy, else HTTPS_PROXY (and so on);
    # TOKENMETER_HTTPS_PROXY= (empty) means none, whatever HTTPS_PROXY says. Hidden from repr:
    # a proxy URL may carry a password.
    https_proxy: str | None = Field(default=None, repr=False)
    http_proxy: str | None = Field(default=None, repr=False)
    no_proxy: str | None = None
    # PEM certificates that verify upstream TLS (and an https:// proxy), instead of the system's.
    ca_bundle: FilePath | None = Field(
        default=None, validation_alias=AliasChoices("TOKENMETER_CA_BUNDLE", "SSL_CERT_FILE")
    )

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

    @field_validator("https_proxy", "http_proxy")
    @classmethod
    def _proxy_is_http(cls, value: str | None) -> str | None:
        if not value:
            return None
        parse_proxy_url(value)  # raises ValueError with the reason; never echoes the URL
        return value

    @field_validator("no_proxy")
    @classmethod
    def _no_proxy_parses(cls, value: str | None) -> str | None:
        NoProxy(value)  # a malformed CIDR block raises ValueError
        return value or None

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=value)
            except ssl.SSLError as exc:
                raise ValueError(f"{value}: no PEM certificate in it ({exc.reason})") from exc
        return value

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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        standard = _StandardProxyVariables(settings_cls)
        return init_settings, env_settings, standard, dotenv_settings, file_secret_settings


class _StandardProxyVariables(PydanticBaseSettingsSource):
    """``https_proxy``/``HTTPS_PROXY``, ``http_proxy``/``HTTP_PROXY``, ``no_proxy``/``NO_PROXY``
    as ``urllib.request.getproxies_environment`` reads them; below the ``TOKENMETER_`` names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for all three at once

    def __call__(self) -> dict[str, Any]:
        found = urllib.request.getproxies_environment()
        names = {"https": "https_proxy", "http": "http_proxy", "no": "no_proxy"}
        return {field: found[scheme] for scheme, field in names.items() if scheme in found}
