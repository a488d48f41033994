"""One Settings object for the whole proxy and CLI: ``TOKENMETER_*`` variables, then a config file.

Nothing reads the environment anywhere else. Where a value comes from, strongest first:
arguments given in code (the CLI's ``--database``, ``--port`` …), the environment
(``TOKENMETER_<NAME>``), the config file, the default. The config file is TOML with the same
names in lower case (``database_url = "…"``); it is ``$TOKENMETER_CONFIG`` when set, else the
first of ``./tokenmeter.toml`` and ``$XDG_CONFIG_HOME/tokenmeter/tokenmeter.toml`` that exists.

The default database and spool live in ``$XDG_DATA_HOME/tokenmeter/`` (``~/.local/share/…``),
not in the working directory, so ``tokenmeter serve`` and every ``tokenmeter`` command agree on
one database wherever they are run from.

Validators refuse unsafe or meaningless values at start, so a misconfigured proxy fails loudly
before it serves a single request. ``load_settings`` turns every such problem into one
``SettingsError`` line naming where the bad value came from; ``unknown_variables`` finds
misspelled ``TOKENMETER_*`` names, ``origins`` says where each effective value came from. All
three work from ``Settings.model_fields``: a new field needs nothing but its declaration.

A few settings also answer to the standard names other tools use, below their ``TOKENMETER_``
name: ``PROMETHEUS_MULTIPROC_DIR``; ``SSL_CERT_FILE`` for ``ca_bundle``; and ``HTTPS_PROXY``,
``HTTP_PROXY``, ``NO_PROXY`` for the egress proxy, read by ``urllib.request``'s own rules (the
lower-case name wins over the upper-case one, and an empty lower-case one unsets it), which
pydantic's case-insensitive aliases cannot express: ``_StandardProxyVariables`` does it.
"""

from __future__ import annotations

import difflib
import os
import re
import ssl
import tomllib
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AliasChoices,
    Field,
    FilePath,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from proxy.egress import Egress, NoProxy, parse_proxy_url

ENV_PREFIX = "TOKENMETER_"
_SECRET = re.compile(r"token|secret|salt|password|admin_key|api_key$")
CONFIG_VARIABLE = "TOKENMETER_CONFIG"
CONFIG_NAME = "tokenmeter.toml"
MIN_TOKEN_CHARS = 16
# What example files and tutorials put where a secret belongs: refused, so a copied example
# never becomes a live token.
_PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me", "your-token")


class SettingsError(ValueError):
    """A setting or the config file is wrong; the message is one line naming where and why."""


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/tokenmeter`` (default ``~/.local/share/tokenmeter``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local/share")
    return Path(base) / "tokenmeter"


def config_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where a config file is looked for, in order (the first that exists is used)."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_VARIABLE):
        return [Path(env[CONFIG_VARIABLE]).expanduser()]
    home = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return [Path.cwd() / CONFIG_NAME, Path(home) / "tokenmeter" / CONFIG_NAME]


def config_file(environ: Mapping[str, str] | None = None) -> Path | None:
    """The config file in use, or None. An explicit ``TOKENMETER_CONFIG`` must exist."""
    env = os.environ if environ is None else environ
    candidates = config_candidates(env)
    if env.get(CONFIG_VARIABLE) and not candidates[0].is_file():
        raise SettingsError(f"{CONFIG_VARIABLE}={env[CONFIG_VARIABLE]}: no such file")
    return next((path for path in candidates if path.is_file()), None)


def ensure_data_dir(database_url: str) -> None:
    """Create ``data_dir()`` when the database lives there (the default location): the one
    directory tokenmeter makes for itself; any other database's directory must exist."""
    prefix = "sqlite+aiosqlite:///"
    if database_url.startswith(prefix) and Path(database_url[len(prefix) :]).parent == data_dir():
        data_dir().mkdir(parents=True, exist_ok=True)


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{data_dir() / 'tokenmeter.db'}"


def default_spool_dir() -> Path:
    return data_dir() / "spool"


class Settings(BaseSettings):
    """Every knob of tokenmeter. README's configuration reference lists the same fields."""

    # Errors name the setting and the reason, never its value: a proxy URL, the database URL
    # and the admin token may hold secrets, and a start-up error ends up in logs.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    database_url: str = Field(default_factory=default_database_url)
    migrate_on_start: bool = True
    anthropic_upstream: str = "https://api.anthropic.com"
    openai_upstream: str = "https://api.openai.com"
    # `tokenmeter reconcile fetch`: Anthropic's Admin API and an admin key (sk-ant-admin01-…).
    anthropic_admin_url: str = "https://api.anthropic.com"
    anthropic_admin_key: str | None = Field(default=None, repr=False)
    # ... and OpenAI's organization usage and costs API with an OpenAI Admin key.
    openai_admin_url: str = "https://api.openai.com"
    openai_admin_key: str | None = Field(default=None, repr=False)
    # The proxy's address as clients reach it (behind a load balancer), for the ``results_url``
    # of Message Batches; unset: the scheme and Host of each request.
    public_url: str | None = None

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
    # Proxy-issued keys (README: Keys): how often each proxy reloads them from the database (a
    # revocation takes effect within this), whether a request without one is refused, and the
    # company's provider keys sent upstream in their place (or files holding them).
    key_cache_s: float = Field(default=5.0, gt=0, le=3600)
    require_key: bool = False
    anthropic_api_key: str | None = Field(default=None, repr=False)
    openai_api_key: str | None = Field(default=None, repr=False)
    anthropic_api_key_file: FilePath | None = None
    openai_api_key_file: FilePath | None = None
    # Single sign-on (README: Keys): bearer JWTs of this issuer for this audience name the user.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None  # default: the jwks_uri of the issuer's discovery document
    oidc_user_claim: str = "sub"
    oidc_groups_claim: str = "groups"
    prices_file: Path | None = None

    spool_dir: Path = Field(default_factory=default_spool_dir)
    recorder_batch_size: int = Field(default=1000, ge=1)
    recorder_flush_interval_s: float = Field(default=0.5, gt=0)
    recorder_queue_max: int = Field(default=100_000, ge=1)
    # Longest the recorder waits for one database write before it counts the database as away.
    db_write_timeout_s: float = Field(default=5.0, gt=0)
    # Longest wait between two tries to reach a database that is away.
    recorder_retry_max_s: float = Field(default=5.0, gt=0)
    # On SIGTERM, how long open exchanges (streams) may take to finish before they are cut.
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    retention_days: int | None = Field(default=None, ge=1)

    metrics_per_user: bool = True
    # First-come user/team label values per process; later ones are counted as "other".
    metrics_max_users: int = Field(default=1000, ge=1)
    metrics_max_teams: int = Field(default=1000, ge=1)
    # Per-person pay on /metrics only when asked for (and then only behind a metrics token).
    metrics_personal_pay: bool = False
    metrics_token: str | None = None
    # prometheus_client's own variable; `serve --workers N` sets it (a fresh temporary dir).
    prometheus_multiproc_dir: Path | None = Field(
        default=None, validation_alias="PROMETHEUS_MULTIPROC_DIR"
    )
    admin_token: str | None = None
    # The dashboard's read-only login (finance): sees every page, changes nothing.
    viewer_token: str | None = None
    # USD per unit of each compensation currency, e.g. {"EUR": "1.08"}: the company's own rates.
    usd_per_currency: dict[str, Decimal] = Field(default_factory=dict)
    # One JSON line per exchange on stdout (status, model, tokens, cost, attribution); off: free.
    access_log: Literal["off", "json"] = "off"
    # Work context (README: Work context from Claude Code). Loopback callers may always post a
    # session's context; others need this bearer token (or the admin token).
    context_token: str | None = None
    # The first match in a branch name is the session's ticket, and its task when no explicit
    # task header names one.
    ticket_pattern: str = r"[A-Z][A-Z0-9]+-\d+"

    # Budgets (README: Budgets and caps): the calendar periods are counted in this time zone.
    budget_tz: str = "UTC"
    # The store is away (no budget view for budget_stale_s): refuse metered requests instead
    # of letting them pass unenforced.
    budget_fail_closed: bool = False
    budget_refresh_s: float = Field(default=0.25, gt=0, le=60)
    budget_stale_s: float = Field(default=10.0, gt=0)
    # POSTed a JSON body once per budget threshold crossed per period, across replicas.
    alert_webhook_url: str | None = None

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
        return init_settings, env_settings, standard, ConfigFileSource(settings_cls, config_file())

    @field_validator(
        "anthropic_upstream", "openai_upstream", "anthropic_admin_url", "openai_admin_url"
    )
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

    @field_validator("admin_token", "metrics_token", "context_token", "viewer_token")
    @classmethod
    def _token_is_strong(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value) < MIN_TOKEN_CHARS:
            raise ValueError(f"must be at least {MIN_TOKEN_CHARS} characters")
        if any(word in value.lower() for word in _PLACEHOLDERS):
            raise ValueError("is a placeholder from an example: generate a random token")
        return value

    @field_validator("ticket_pattern")
    @classmethod
    def _ticket_pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _personal_pay_is_guarded(self) -> Settings:
        if self.metrics_personal_pay and self.metrics_token is None:
            raise ValueError(
                "TOKENMETER_METRICS_PERSONAL_PAY=true puts each person's pay on /metrics: "
                "set TOKENMETER_METRICS_TOKEN too"
            )
        return self

    @model_validator(mode="after")
    def _oidc_has_an_audience(self) -> Settings:
        if self.oidc_issuer is not None and not self.oidc_audience:
            raise ValueError(
                "TOKENMETER_OIDC_ISSUER needs TOKENMETER_OIDC_AUDIENCE too: a token for another "
                "application of the same issuer must not be accepted"
            )
        return self

    @field_validator("budget_tz")
    @classmethod
    def _known_time_zone(cls, value: str) -> str:
        if value.upper() == "UTC":
            return "UTC"
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"budget_tz: unknown time zone {value!r}") from None
        return value

    @field_validator("usd_per_currency")
    @classmethod
    def _rates_are_positive(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            if len(code) != 3 or not code.isupper() or not rate.is_finite() or rate <= 0:
                raise ValueError(f"usd_per_currency: {code!r}: {rate} must be a positive rate")
        return value

    def company_keys(self) -> dict[str, str]:
        """Provider name -> the company key sent upstream for tokenmeter keys (reads the
        ``_FILE`` variants; the variable itself wins)."""
        found: dict[str, str] = {}
        for provider in ("anthropic", "openai"):
            key: str | None = getattr(self, f"{provider}_api_key")
            path: Path | None = getattr(self, f"{provider}_api_key_file")
            if key is None and path is not None:
                key = path.read_text().strip() or None
            if key:
                found[provider] = key
        return found

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


class ConfigFileSource(TomlConfigSettingsSource):
    """The config file: a syntax error or an unknown name is an error, with the closest name."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        self.path = path
        try:
            super().__init__(settings_cls, toml_file=path)
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise SettingsError(f"{path}: not UTF-8 text: {exc.reason}") from None
        known = {_file_key(name) for name in settings_cls.model_fields}
        for key in self.toml_data:
            if key not in known:
                raise SettingsError(f"{path}: unknown setting {key!r}{_hint(key, known)}")


def env_name(name: str) -> str:
    """The environment variable of a field: ``TOKENMETER_<NAME>`` or its own alias."""
    return env_names(name)[0]


def env_names(name: str) -> list[str]:
    """Every environment variable a field is read from, strongest first (``AliasChoices``)."""
    alias = Settings.model_fields[name].validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [f"{ENV_PREFIX}{name.upper()}"]


def _file_key(name: str) -> str:
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else name


def _hint(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f": did you mean {close[0]}?" if close else ""


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One message per ``TOKENMETER_*`` variable that is no setting, with the closest name."""
    env = os.environ if environ is None else environ
    known = {env_name(name) for name in Settings.model_fields} | {CONFIG_VARIABLE}
    found = [name for name in env if name.upper().startswith(ENV_PREFIX)]
    return [
        f"{name} is not a setting and is ignored{_hint(name.upper(), known)}"
        for name in sorted(found)
        if name.upper() not in known
    ]


def load_settings(
    overrides: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None
) -> Settings:
    """``Settings`` from ``overrides``, the environment and the config file; any problem is one
    ``SettingsError`` line naming the variable, file or argument (``labels``) of the bad value."""
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        where = origins(overrides, labels)
        problems = [_problem(error, where) for error in exc.errors()]
        raise SettingsError("; ".join(problems)) from None


def _problem(error: Any, where: Mapping[str, str]) -> str:
    name = str(error["loc"][0]) if error["loc"] else "settings"
    field = name if name in Settings.model_fields else _field_of_alias(name)
    message = str(error["msg"]).removeprefix("Value error, ")
    got = "" if is_secret(field) else f" (got {error['input']!r})"
    return f"{where.get(field, name)}: {message}{got}"


def is_secret(name: str) -> bool:
    """A setting never shown (a name with token, secret, salt or password in it, or an API key)."""
    return _SECRET.search(name) is not None


def _field_of_alias(alias: str) -> str:
    return next((n for n in Settings.model_fields if _file_key(n) == alias), alias)


def origins(
    overrides: Mapping[str, Any] | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Where each setting's effective value comes from: the argument that gave it (``labels``,
    default ``--name``), the environment variable, the config file, or ``default``."""
    given, labels = dict(overrides or {}), dict(labels or {})
    set_here = {name.upper() for name, value in os.environ.items() if value}
    standard = _StandardProxyVariables(Settings)()
    path = config_file()
    in_file = ConfigFileSource(Settings, path).toml_data if path is not None else {}
    out: dict[str, str] = {}
    for name in Settings.model_fields:
        key = _file_key(name)
        if name in given:
            out[name] = labels.get(name, "--" + name.replace("_", "-"))
        elif variable := next((v for v in env_names(name) if v.upper() in set_here), None):
            out[name] = variable
        elif name in standard:
            out[name] = f"{name.upper()} (or {name})"
        elif key in in_file:
            out[name] = f"{key} in {path}"
        else:
            out[name] = "default"
    return out


class _StandardProxyVariables(PydanticBaseSettingsSource):
    """``https_proxy``/``HTTPS_PROXY``, ``http_proxy``/``HTTP_PROXY``, ``no_proxy``/``NO_PROXY``
    as ``urllib.request.getproxies_environment`` reads them; below the ``TOKENMETER_`` names."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ answers for all three at once

    def __call__(self) -> dict[str, Any]:
        found = urllib.request.getproxies_environment()
        names = {"https": "https_proxy", "http": "http_proxy", "no": "no_proxy"}
        return {field: found[scheme] for scheme, field in names.items() if scheme in found}


def egress_of(settings: Settings) -> Egress:
    """The egress proxy and CA bundle every upstream client uses."""
    return Egress(
        https_proxy=settings.https_proxy,
        http_proxy=settings.http_proxy,
        no_proxy=settings.no_proxy,
        ca_bundle=settings.ca_bundle,
    )
