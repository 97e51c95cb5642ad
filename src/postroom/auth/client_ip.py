"""Who is calling: the socket peer, or the client a trusted proxy forwarded for.

``X-Forwarded-For`` is believed only when the socket peer is one of ``POSTROOM_TRUSTED_PROXIES``; then the
right-most entry that is not itself a trusted proxy is the client (every entry left of it could have been written
by the client). A hop that is not an IP address makes the client unknown, and an unknown client fails every
allowlist. This one function feeds the allowlist, the lockout and the logs, so they always agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar.connection import ASGIConnection

from postroom.core.netaddr import IPAddress, IPNetwork, ip_in, parse_ip


def _parse_hop(hop: str) -> IPAddress | None:
    address = parse_ip(hop)
    if address is not None:
        return address
    if hop.startswith("[") and "]" in hop:  # "[2001:db8::1]:443"
        return parse_ip(hop[1 : hop.index("]")])
    if hop.count(":") == 1:  # "203.0.113.7:443"
        return parse_ip(hop.split(":", 1)[0])
    return None


def client_ip(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: tuple[IPNetwork, ...]
) -> IPAddress | None:
    """The client's address, normalised (IPv4-mapped IPv6 becomes IPv4), or None when it cannot be known."""
    peer_ip = parse_ip(peer) if peer else None
    if peer_ip is None or not trusted_proxies or not ip_in(peer_ip, trusted_proxies):
        return peer_ip
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",")]
    hops = [hop for hop in hops if hop]
    if not hops:
        return peer_ip
    for hop in reversed(hops):
        address = _parse_hop(hop)
        if address is None:
            return None
        if not ip_in(address, trusted_proxies):
            return address
    return _parse_hop(hops[0])


def connection_client_ip(connection: ASGIConnection[Any, Any, Any, Any]) -> IPAddress | None:
    """``client_ip`` for a Litestar request, with the trusted proxies from the app's settings."""
    peer = connection.scope.get("client")
    return client_ip(
        peer[0] if peer else None,
        connection.headers.getall("x-forwarded-for", []),
        connection.app.state.settings.trusted_proxies,
    )
