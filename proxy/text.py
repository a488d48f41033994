"""What a name or a title may be, wherever one enters a record or a filter.

A name (a user, team, task, session or model as tokenmeter records it) is at most
``NAME_MAX_CHARS`` characters; free text (a task title) at most ``TEXT_MAX_CHARS``. Neither may
hold a control character (``CONTROL``: C0, DEL, C1, the line and paragraph separators, and the
bidirectional controls that make a table or a terminal show something other than what is stored,
"Trojan Source"): NUL cannot be stored in PostgreSQL at all, and the others are never part of a
real name. The same rule holds for attribution values (``proxy.attribution``) and decides what the
CLI shows escaped. Any other character, ``/``, quotes and non-ASCII included,
is fine. ``CONTROL_FREE`` is the same rule as a pattern, for request schemas (the API documents
it in ``/openapi.json``); ``problem`` applies it to records that arrive another way (a CSV).
"""

from __future__ import annotations

import re

NAME_MAX_CHARS = 256
TEXT_MAX_CHARS = 1000
_CONTROLS = "\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069"
CONTROL = re.compile(f"[{_CONTROLS}]")
CONTROL_FREE = f"^[^{_CONTROLS}]*$"


def problem(value: str, max_chars: int = NAME_MAX_CHARS) -> str | None:
    """Why ``value`` cannot be a name (or text of ``max_chars``), or None when it can."""
    if len(value) > max_chars:
        return f"is {len(value)} characters long (at most {max_chars})"
    found = CONTROL.search(value)
    if found:
        return f"contains the control character {found.group()!r}"
    return None
