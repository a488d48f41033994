"""Provider reports in: Anthropic's usage and cost report pages, fetched or imported, stored.

Two ways in, one result (``provider_reports`` rows, one snapshot per run):

- ``fetch``: reads ``GET /v1/organizations/usage_report/messages`` (daily buckets, grouped by
  model, API key, service tier, context window and inference geo) and
  ``GET /v1/organizations/cost_report`` (daily, grouped by description: model, cost and token
  type) from the Admin API at ``TOKENMETER_ANTHROPIC_ADMIN_URL`` with the admin key
  ``TOKENMETER_ANTHROPIC_ADMIN_KEY``, following ``next_page`` while ``has_more``. It goes out
  through the proxy's own upstream client and egress settings (``HTTPS_PROXY``, the CA bundle),
  so it reaches Anthropic the way the proxy does. Each page is stored as received, with the time
  it arrived. The key is sent in ``x-api-key`` and never printed, logged or stored.
- ``read_file`` then ``import_pages``: the same JSON saved by hand (one page, or a JSON list
  of pages, of either report; each page's shape tells which), for companies that keep the admin
  key away from the proxy. Its fetch time is the file's modification time (when the pages were
  saved).

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
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncEngine

from proxy.config import Settings, egress_of
from proxy.providers.admin import COST, ENDPOINTS, USAGE, Page, PageError, read_page
from proxy.store.snapshots import StoredPage, add_pages
from proxy.upstream.base import RawHeaders, Timeouts, Upstream, UpstreamError
from proxy.usage import new_event_id

ANTHROPIC = "anthropic"
MAX_PAGE_BYTES = 32 * 1024 * 1024  # a month of hourly buckets by every group is a few MB
MAX_PAGES = 1000
ANTHROPIC_VERSION = "2023-06-01"
USAGE_GROUPS = ("model", "api_key_id", "service_tier", "context_window", "inference_geo")
COST_GROUPS = ("description",)


class ReconcileError(Exception):
    """A page, file or Admin API answer that cannot be used; ``str()`` is one line."""


@dataclass(slots=True)
class Summary:
    """What one fetch or import stored."""

    snapshot_id: str
    fetched_at: datetime
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

    def __init__(self, source: str, fetched_at: datetime | None = None) -> None:
        self.source = source
        self.summary = Summary(new_event_id(), fetched_at or datetime.now(UTC))
        self.pages: list[StoredPage] = []

    def add(self, body: str, page: Page, fetched_at: datetime | None = None) -> None:
        if len(self.pages) >= MAX_PAGES:
            raise ReconcileError(f"more than {MAX_PAGES} pages in one run: ask for a shorter span")
        self.summary.add(page)
        self.pages.append(
            StoredPage(
                new_event_id(),
                self.summary.snapshot_id,
                fetched_at or self.summary.fetched_at,
                ANTHROPIC,
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
    """The pages of a saved file (one page or a list of pages) with their JSON text, and the
    file's modification time. ``ReconcileError`` on anything else."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_PAGE_BYTES + 1)
        saved = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError as exc:
        raise ReconcileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PAGE_BYTES:
        raise ReconcileError(f"{path} is over {MAX_PAGE_BYTES // 2**20} MB: split it into pages")
    decoded = _json(data, str(path))
    pages = decoded if isinstance(decoded, list) else [decoded]
    if not pages:
        raise ReconcileError(f"{path} is an empty list: no pages to import")
    if len(pages) > MAX_PAGES:
        raise ReconcileError(f"{path} has {len(pages)} pages, more than {MAX_PAGES}")
    checked = []
    for n, page in enumerate(pages):
        where = f"{path}" if len(pages) == 1 and not isinstance(decoded, list) else f"{path}[{n}]"
        checked.append((json.dumps(page, separators=(",", ":")), _read(page, where)))
    return checked, saved


async def import_pages(
    engine: AsyncEngine, pages: list[tuple[str, Page]], saved: datetime
) -> Summary:
    """Store the pages ``read_file`` read, saved at ``saved``, as one snapshot (module doc)."""
    run = _Run("import", saved)
    for body, page in pages:
        run.add(body, page)
    return await run.store(engine)


def _json(data: bytes, where: str) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ReconcileError(f"{where} is not JSON: {reason}") from None
    except RecursionError:
        raise ReconcileError(f"{where} is nested too deeply to be a report") from None


def _read(page: object, where: str, endpoint: str | None = None) -> Page:
    try:
        return read_page(page, endpoint)
    except PageError as exc:
        raise ReconcileError(f"{where}: {exc}") from None


# Fetching --------------------------------------------------------------------------------------


def admin_client(settings: Settings) -> Upstream:
    """The upstream client the fetch uses: the proxy's own, with its egress settings."""
    from proxy.upstream.http11 import Http11Upstream

    timeouts = Timeouts(settings.connect_timeout_s, settings.read_timeout_s)
    return Http11Upstream(timeouts, egress=egress_of(settings))


def report_url(base: str, endpoint: str, start: datetime, end: datetime, page: str | None) -> str:
    """The Admin API URL of one page of ``endpoint`` over ``[start, end)`` in daily buckets."""
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


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def fetch(
    engine: AsyncEngine,
    upstream: Upstream,
    *,
    base_url: str,
    admin_key: str,
    start: datetime,
    end: datetime,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Summary:
    """Fetch both reports over ``[start, end)`` and store them as one snapshot (module doc)."""
    run = _Run("fetch", clock())
    headers = [
        (b"x-api-key", admin_key.encode("ascii", "replace")),
        (b"anthropic-version", ANTHROPIC_VERSION.encode()),
        (b"accept", b"application/json"),
        (b"user-agent", b"tokenmeter-reconcile"),
    ]
    for endpoint in (USAGE, COST):
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            url = report_url(base_url, endpoint, start, end, cursor)
            body = await _get(upstream, url, headers, endpoint)
            page = _read(_json(body, ENDPOINTS[endpoint]), ENDPOINTS[endpoint], endpoint)
            run.add(body.decode("utf-8"), page, clock())
            if not page.has_more:
                break
            if page.next_page is None or page.next_page in seen:
                raise ReconcileError(f"{ENDPOINTS[endpoint]}: has_more without a new next_page")
            seen.add(cursor := page.next_page)
    return await run.store(engine)


async def _get(upstream: Upstream, url: str, headers: RawHeaders, what: str) -> bytes:
    path = ENDPOINTS[what]
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
    """`` (message)`` of an Anthropic error body, or nothing."""
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return ""
    return f" ({str(message).splitlines()[0][:200]})" if message else ""
