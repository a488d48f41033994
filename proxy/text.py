"""What a name or a title may be, wherever one enters a record or a filter.

A name (a user, team, task, session or model as tokenmeter records it) is at most
``NAME_MAX_CHARS`` characters; free text (a task title) at most ``TEXT_MAX_CHARS``. Neither may
hold a control character (C0, DEL, C1): NUL cannot be stored in PostgreSQL at all, and the
others are never part of a real name. Any other character, ``/``, quotes and non-ASCII included,
is fine. ``CONTROL_FREE`` is the same rule as a pattern, for request schemas (the API documents
it in ``/openapi.json``); ``problem`` applies it to records that arrive another way (a CSV).
"""

from __future__ import annotations

import re

NAME_MAX_CHARS = 256
TEXT_MAX_CHARS = 1000
CONTROL_FREE = r"^[^\x00-\x1f\x7f-\x9f]*$"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def problem(value: str, max_chars: int = NAME_MAX_CHARS) -> str | None:
    """Why ``value`` cannot be a name (or text of ``max_chars``), or None when it can."""
    if len(value) > max_chars:
        return f"is {len(value)} characters long (at most {max_chars})"
    found = _CONTROL.search(value)
    if found:
        return f"contains the control character {found.group()!r}"
    return None
