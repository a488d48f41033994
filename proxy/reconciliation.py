"""Provider reports in: Anthropic's and OpenAI's usage and cost pages, fetched or imported.

Two ways in, one result (``provider_reports`` rows, one snapshot per run and provider):

- ``fetch``, per provider (``ANTHROPIC_API``, ``OPENAI_API``):
  Anthropic: ``GET /v1/organizations/usage_report/messages`` (daily buckets, grouped by model,
  API key, service tier, context window and inference geo) and
  ``GET /v1/organizations/cost_report`` (daily, grouped by description: model, cost and token
  type) from ``TOKENMETER_ANTHROPIC_ADMIN_URL`` with ``TOKENMETER_ANTHROPIC_ADMIN_KEY`` (sent in
  ``x-api-key``); OpenAI: ``GET /v1/organization/usage/completions`` and ``…/usage/embeddings``
  (daily buckets, grouped by model, API key and project) and ``GET /v1/organization/costs``
  (daily, grouped by line item)
  from ``TOKENMETER_OPENAI_ADMIN_URL`` with ``TOKENMETER_OPENAI_ADMIN_KEY`` (a bearer token).
  Both follow ``next_page`` while ``has_more`` and go out through the proxy's own upstream
  client and egress settings (``HTTPS_PROXY``, the CA bundle), so they reach the provider the
  way the proxy does. Each page is stored as received, with the time it arrived. A key is
  never printed, logged or stored.
- ``read_file`` then ``import_pages``: the same JSON saved by hand (one page, or a JSON list
  of pages, of either report of either provider; each page's shape tells which), for companies
  that keep the admin key away from the proxy. Each page is stored as its text in the file; its
  fetch time is the file's modification time (when the pages were saved).

Input is bounded: a file or one answer of at most ``MAX_PAGE_BYTES``, at most ``MAX_PAGES``
pages per run. Anything that is not a report page is a ``ReconcileError`` with a one-line reason,
and nothing of that run is stored. Errors::

    ReconcileError          a page, a file or an Admin API answer that cannot be used
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.config import Settings, egress_of
from proxy.providers import openai_admin
from proxy.providers.admin import ANTHROPIC, COST, ENDPOINTS, USAGE, Page, PageError
from proxy.providers.billing import read_page
from proxy.store.snapshots import StoredPage, add_pages
from proxy.upstream.base import RawHeaders, Timeouts, Upstream, UpstreamError
from proxy.usage import new_event_id

OPENAI = openai_admin.OPENAI
MAX_PAGE_BYTES = 32 * 1024 * 1024  # a month of hourly buckets by every group is a few MB
MAX_PAGES = 1000
ANTHROPIC_VERSION = "2023-06-01"
USAGE_GROUPS = ("model", "api_key_id", "service_tier", "context_window", "inference_geo")
COST_GROUPS = ("description",)
OPENAI_USAGE_GROUPS = ("model", "api_key_id", "project_id")
OPENAI_COST_GROUPS = ("line_item",)


class ReconcileError(Exception):
    """A page, file or Admin API answer that cannot be used; ``str()`` is one line."""


@dataclass(slots=True)
class Summary:
    """What one fetch or import stored."""

    snapshot_id: str
    fetched_at: datetime
    provider: str = ANTHROPIC
    pages: Counter[str] = field(default_factory=Counter)  # by report
    buckets: Counter[str] = field(default_factory=Counter)
    lines: Counter[str] = field(default_factory=Counter)
    first: datetime | None = None
    last: datetime | None = None

    def add(self, page: Page) -> None:
        self.pages[page.endpoint] += 1
        self.buckets[page.endpoint] += len(page.buckets)
        self.lines[page.endpoint] += page.lines
        if page.starts_at is not None:
            self.first = min(filter(None, (self.first, page.starts_at)))
        if page.ends_at is not None:
            self.last = max(filter(None, (self.last, page.ends_at)))


class _Run:
    """The pages of one snapshot, checked, kept until all are in."""

    def __init__(self, source: str, provider: str, fetched_at: datetime | None = None) -> None:
        self.source = source
        self.summary = Summary(new_event_id(), fetched_at or datetime.now(UTC), provider)
        self.pages: list[StoredPage] = []

    def add(self, body: str, page: Page, fetched_at: datetime | None = None) -> None:
        if page.provider != self.summary.provider:  # never: runs are per provider
            raise ReconcileError(f"a {page.provider} page in a {self.summary.provider} run")
        if len(self.pages) >= MAX_PAGES:
            raise ReconcileError(f"more than {MAX_PAGES} pages in one run: ask for a shorter span")
        self.summary.add(page)
        self.pages.append(
            StoredPage(
                new_event_id(),
                self.summary.snapshot_id,
                fetched_at or self.summary.fetched_at,
                page.provider,
                page.endpoint,
                self.source,
                page.starts_at,
                page.ends_at,
                body,
            )
        )

    async def store(self, engine: AsyncEngine) -> Summary:
        await add_pages(engine, self.pages)
        return self.summary


def read_file(path: Path) -> tuple[list[tuple[str, Page]], datetime]:
    """The pages of a saved file (one page or a list of pages), each with its own JSON text as
    in the file, and the file's modification time. ``ReconcileError`` on anything else."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PAGE_BYTES + 1)
        saved = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError as exc:
        raise ReconcileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PAGE_BYTES:
        raise ReconcileError(f"{path} is over {MAX_PAGE_BYTES // 2**20} MB: split it into pages")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ReconcileError(f"{path} is not JSON: not UTF-8 ({exc.reason})") from None
    decoded = _json(text, str(path))
    if not isinstance(decoded, list):
        return [(text.strip(), _read(decoded, str(path)))], saved
    if not decoded:
        raise ReconcileError(f"{path} is an empty list: no pages to import")
    if len(decoded) > MAX_PAGES:
        raise ReconcileError(f"{path} has {len(decoded)} pages, more than {MAX_PAGES}")
    return [
        (body, _read(page, f"{path}[{n}]")) for n, (body, page) in enumerate(_items(text))
    ], saved


def _items(text: str) -> list[tuple[str, Any]]:
    """The elements of a JSON list ``text`` (already known to be one), each with its text."""
    decoder = json.JSONDecoder(parse_float=Decimal)
    items = []
    at = _blank(text, _blank(text, 0) + 1)  # after "["
    while text[at] != "]":
        value, end = decoder.raw_decode(text, at)
        items.append((text[at:end], value))
        at = _blank(text, end)
        if text[at] == ",":
            at = _blank(text, at + 1)
    return items


def _blank(text: str, at: int) -> int:
    """The index of the first non-whitespace character from ``at`` (JSON's whitespace)."""
    while at < len(text) and text[at] in " \t\n\r":
        at += 1
    return at


async def import_pages(
    engine: AsyncEngine, pages: list[tuple[str, Page]], saved: datetime
) -> list[Summary]:
    """Store the pages ``read_file`` read, saved at ``saved``: one snapshot per provider
    (module doc), in one transaction each."""
    runs: dict[str, _Run] = {}
    for body, page in pages:
        runs.setdefault(page.provider, _Run("import", page.provider, saved)).add(body, page)
    return [await run.store(engine) for run in runs.values()]


def _json(data: str | bytes, where: str) -> Any:
    """Decoded JSON, numbers with a fraction as ``Decimal`` (OpenAI's dollar amounts)."""
    try:
        return json.loads(data, parse_float=Decimal)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReconcileError(f"{where} is not JSON: {reason}") from None
    except RecursionError:
        raise ReconcileError(f"{where} is nested too deeply to be a report") from None


def _read(
    page: object, where: str, endpoint: str | None = None, provider: str | None = None
) -> Page:
    try:
        return read_page(page, endpoint, provider)
    except PageError as exc:
        raise ReconcileError(f"{where}: {exc}") from None


# Fetching --------------------------------------------------------------------------------------


def admin_client(settings: Settings) -> Upstream:
    """The upstream client the fetch uses: the proxy's own, with its egress settings."""
    from proxy.upstream.http11 import Http11Upstream

    timeouts = Timeouts(settings.connect_timeout_s, settings.read_timeout_s)
    return Http11Upstream(timeouts, egress=egress_of(settings))


def report_url(base: str, endpoint: str, start: datetime, end: datetime, page: str | None) -> str:
    """Anthropic's Admin API URL of one page of ``endpoint`` over ``[start, end)``, daily."""
    groups = USAGE_GROUPS if endpoint == USAGE else COST_GROUPS
    query: list[tuple[str, str]] = [
        ("starting_at", _rfc3339(start)),
        ("ending_at", _rfc3339(end)),
        ("bucket_width", "1d"),
        ("limit", "31"),
        *(("group_by[]", name) for name in groups),
    ]
    if page is not None:
        query.append(("page", page))
    return f"{base.rstrip('/')}{ENDPOINTS[endpoint]}?{urlencode(query)}"


def openai_url(base: str, endpoint: str, start: datetime, end: datetime, page: str | None) -> str:
    """OpenAI's organization API URL of one page of ``endpoint`` over ``[start, end)``, daily
    (Unix seconds; ``group_by`` repeated, as OpenAI's reference sends it)."""
    groups = OPENAI_COST_GROUPS if endpoint == COST else OPENAI_USAGE_GROUPS
    query: list[tuple[str, str]] = [
        ("start_time", str(int(start.timestamp()))),
        ("end_time", str(int(end.timestamp()))),
        ("bucket_width", "1d"),
        ("limit", "31"),
        *(("group_by", name) for name in groups),
    ]
    if page is not None:
        query.append(("page", page))
    return f"{base.rstrip('/')}{openai_admin.ENDPOINTS[endpoint]}?{urlencode(query)}"


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class AdminApi:
    """How one provider's usage and cost reports are asked for."""

    provider: str
    paths: dict[str, str]
    url: Callable[[str, str, datetime, datetime, str | None], str]
    headers: Callable[[str], RawHeaders]


def _anthropic_headers(key: str) -> RawHeaders:
    return [
        (b"x-api-key", key.encode("ascii", "replace")),
        (b"anthropic-version", ANTHROPIC_VERSION.encode()),
        (b"accept", b"application/json"),
        (b"user-agent", b"tokenmeter-reconcile"),
    ]


def _openai_headers(key: str) -> RawHeaders:
    return [
        (b"authorization", b"Bearer " + key.encode("ascii", "replace")),
        (b"accept", b"application/json"),
        (b"user-agent", b"tokenmeter-reconcile"),
    ]


ANTHROPIC_API = AdminApi(ANTHROPIC, ENDPOINTS, report_url, _anthropic_headers)
OPENAI_API = AdminApi(OPENAI, openai_admin.ENDPOINTS, openai_url, _openai_headers)


async def fetch(
    engine: AsyncEngine,
    upstream: Upstream,
    *,
    base_url: str,
    admin_key: str,
    start: datetime,
    end: datetime,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    api: AdminApi = ANTHROPIC_API,
) -> Summary:
    """Fetch both reports of ``api``'s provider over ``[start, end)`` and store them as one
    snapshot (module doc)."""
    run = _Run("fetch", api.provider, clock())
    headers = api.headers(admin_key)
    for endpoint, path in api.paths.items():
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            url = api.url(base_url, endpoint, start, end, cursor)
            body = await _get(upstream, url, headers, path)
            page = _read(_json(body, path), path, endpoint, api.provider)
            run.add(body.decode("utf-8"), page, clock())
            if not page.has_more:
                break
            if page.next_page is None or page.next_page in seen:
                raise ReconcileError(f"{path}: has_more without a new next_page")
            seen.add(cursor := page.next_page)
    return await run.store(engine)


async def _get(upstream: Upstream, url: str, headers: RawHeaders, path: str) -> bytes:
    try:
        response = await upstream.send("GET", url, headers, b"")
        try:
            body = bytearray()
            async for chunk in response.chunks():
                body += chunk
                if len(body) > MAX_PAGE_BYTES:
                    raise ReconcileError(f"{path}: answer over {MAX_PAGE_BYTES // 2**20} MB")
        finally:
            await response.close()
    except UpstreamError as exc:
        raise ReconcileError(f"{path}: the Admin API could not be reached: {exc}") from None
    if response.status != 200:
        raise ReconcileError(f"{path}: the Admin API answered {response.status}{_why(body)}")
    return bytes(body)


def _why(body: bytes | bytearray) -> str:
    """`` (message)`` of an Anthropic or OpenAI error body (both ``{error: {message}}``), or
    nothing."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f" ({str(message).splitlines()[0][:200]})" if message else ""
