"""Whose billing report a page is: ``read_page`` hands it to Anthropic's or OpenAI's reader.

OpenAI's envelope has ``object: "page"`` (``providers.openai_admin``), Anthropic's has none
(``providers.admin``); both give the same ``Page`` of typed lines. Pure: no I/O.
"""

from __future__ import annotations

from proxy.providers.admin import ANTHROPIC, Page, read_anthropic_page
from proxy.providers.openai_admin import OPENAI, is_openai_page, read_openai_page

PROVIDERS = (ANTHROPIC, OPENAI)


def read_page(page: object, endpoint: str | None = None, provider: str | None = None) -> Page:
    """``page`` (decoded JSON; fractions as ``Decimal``) as a ``Page`` of ``provider`` and
    ``endpoint``, or of those its shape tells when None. ``PageError`` (one line) when it is
    neither, or when no line tells which report it is."""
    if provider is None:
        provider = OPENAI if is_openai_page(page) else ANTHROPIC
    if provider == OPENAI:
        return read_openai_page(page, endpoint)
    return read_anthropic_page(page, endpoint)
