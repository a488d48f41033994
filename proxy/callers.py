"""Who is calling: the loopback rule every guarded surface (``/api/``, the dashboard) keeps.

"Loopback" is judged on the TCP peer alone. The server never rewrites it from
``X-Forwarded-For`` (``SERVER_OPTIONS`` turns uvicorn's proxy headers off), the ``Host`` header
plays no part, and a request carrying any forwarding header is refused: a reverse proxy on this
host relays strangers from 127.0.0.1, so a relayed request is never a local caller.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Container

FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip", "true-client-ip")


def is_loopback(host: str) -> bool:
    """True for an IP address in 127.0.0.0/8 or ::1 (also IPv4-mapped); never for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def relayed_by(headers: Container[str]) -> str | None:
    """The first forwarding header a request carries (it was relayed), else None."""
    return next((name for name in FORWARDING_HEADERS if name in headers), None)
