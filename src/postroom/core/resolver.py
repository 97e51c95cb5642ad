"""The DNS resolver every lookup uses (MX, domain verification, webhook destinations): the configured nameserver
(``POSTROOM_DNS_SERVER``) or the system's, with one time budget per lookup."""

from __future__ import annotations

import ipaddress

import dns.asyncresolver

DEFAULT_DNS_PORT = 53
# dnspython retransmits within a lookup's lifetime; a lost UDP packet should cost this much, not the whole budget.
_PER_TRY_TIMEOUT = 2.0


def _parse_nameserver(nameserver: str) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` (a bare IPv6 address is taken whole)."""
    text = nameserver.strip()
    port_text = ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"DNS server {nameserver!r} is not host, host:port or [v6]:port")
        port_text = rest[1:]
        if rest and not port_text:
            raise ValueError(f"DNS server {nameserver!r} has an empty port")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text:
            raise ValueError(f"DNS server {nameserver!r} has an empty port")
    else:
        host = text
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # dnspython only talks to nameservers by address; resolving a name here would need a resolver already.
        raise ValueError(f"DNS server {nameserver!r} must be an IP address, not {host!r}") from None
    port = DEFAULT_DNS_PORT
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"DNS server {nameserver!r} has an invalid port {port_text!r}")
        port = int(port_text)
    return str(address), port


def make_resolver(nameserver: str | None, *, timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    """A resolver asking ``nameserver`` (POSTROOM_DNS_SERVER: ``host``, ``host:port``, ``[v6]:port``) or, when None,
    the system's resolvers from /etc/resolv.conf. ``timeout`` bounds each lookup as a whole, retries included.

    With an explicit nameserver /etc/resolv.conf is not read at all, so its search domains and options cannot leak
    into lookups (and a host without one still works).
    """
    if nameserver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        host, port = _parse_nameserver(nameserver)
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.port = port
        resolver.nameservers = [host]
    resolver.lifetime = timeout
    resolver.timeout = min(_PER_TRY_TIMEOUT, timeout)
    return resolver
