"""Where a webhook may be sent: resolve the host once, check every address, connect only to a checked one.

A webhook URL is chosen by the customer, and the sender runs inside the operator's network, next to databases,
cloud metadata services and Postroom's own API (which trusts loopback peers as proxies when told to). So, as
Stripe's smokescreen does:

- the host is resolved exactly once per delivery, and *every* address it resolves to must be allowed; one bad
  address refuses the destination (a name with a public and a private address is a rebinding attempt);
- the connection goes to an address that was checked (``Destination.address``): ``delivery.py`` hands it to the
  socket layer while the URL, the ``Host`` header and TLS SNI keep the name, so no second lookup can differ;
- numeric host forms that ``ipaddress`` rejects but the C resolver accepts (``0x7f.1``, ``2130706433``,
  ``127.1``, ``0177.0.0.1``) are read the way the C library reads them, then checked like any other address;
- IPv6 forms that embed an IPv4 address (mapped, IPv4-compatible, NAT64, 6to4, Teredo) are refused outright: the
  address a gateway would turn them into is not ours to predict;
- ``localhost`` and ``*.localhost`` never reach DNS (RFC 6761).

``POSTROOM_WEBHOOK_ALLOW_PRIVATE=1`` (``allow_private``) lifts the address check for internal receivers and
tests; resolution and pinning stay the same. Messages shown to users stay generic (SSRF-07): the delivery log
says the destination is not allowed, never what answered there.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
import httpx

from postroom.core.netaddr import IPAddress

ALLOWED_SCHEMES = ("http", "https")
NOT_ALLOWED = "The destination is not allowed: it must be a public internet address."
UNRESOLVABLE = "The destination's host name could not be resolved."

_BLOCKED: tuple[tuple[IPv4Network | IPv6Network, str], ...] = tuple(
    (IPv4Network(cidr) if ":" not in cidr else IPv6Network(cidr), label)
    for cidr, label in (
        ("0.0.0.0/8", "this network"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::ffff:0:0/96", "IPv4-mapped IPv6"),
        ("::/96", "IPv4-compatible IPv6"),
        ("64:ff9b::/96", "NAT64 (IPv4-embedding)"),
        ("64:ff9b:1::/48", "NAT64 (IPv4-embedding)"),
        ("100::/64", "discard"),
        ("2001::/32", "Teredo (IPv4-embedding)"),
        ("2001:db8::/32", "documentation"),
        ("2001:10::/28", "ORCHID"),
        ("2001:20::/28", "ORCHIDv2"),
        ("2002::/16", "6to4 (IPv4-embedding)"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
)
"""Refused destinations, each with the reason shown in logs."""

# What inet_aton(3) accepts: one to four parts, each decimal, octal (leading 0) or hex (0x…). Matched first
# because glibc's inet_aton also accepts trailing garbage after whitespace.
_LEGACY_IPV4 = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)(?:\.(?:0[xX][0-9a-fA-F]*|[0-9]+)){0,3}")


class DestinationRefused(Exception):
    """The URL may not be used; ``str()`` is safe to show the customer, ``detail`` is for the operator's log."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message


class UnresolvableDestination(DestinationRefused):
    """The host has no address (NXDOMAIN, no A/AAAA, or the resolver failed): a temporary failure at delivery."""


@dataclass(frozen=True, slots=True)
class Target:
    """A syntactically acceptable webhook URL, split into what the connection needs."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Destination:
    """A target whose host resolved to ``addresses``, all of them allowed; connect to ``address``."""

    target: Target
    addresses: tuple[IPAddress, ...]

    @property
    def address(self) -> str:
        return str(self.addresses[0])


def parse_target(url: str) -> Target:
    """Split a webhook URL; ``ValueError`` with a message for the API when it cannot be a webhook URL."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ValueError("The url must be a valid URL.") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise ValueError("The url must start with https:// or http://.")
    if parsed.userinfo:
        raise ValueError("The url must not contain a user name or password; use auth_type basic instead.")
    host = parsed.host.rstrip(".").lower()
    if not host:
        raise ValueError("The url must name a host.")
    if "%" in host:
        raise ValueError("The url must not use an IPv6 zone id.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    path = parsed.raw_path.decode("ascii") or "/"
    return Target(url=str(parsed.copy_with(fragment=None)), scheme=parsed.scheme, host=host, port=port, path=path)


def literal_address(host: str) -> IPAddress | None:
    """The address a numeric host means, including the legacy IPv4 spellings the C resolver accepts."""
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why ``address`` may not receive webhooks, or None when it is a public unicast address."""
    for network, label in _BLOCKED:
        if address.version == network.version and address in network:
            return label
    if not address.is_global:
        return "not globally routable"
    return None


class HostResolver:
    """Resolves webhook hosts: through ``POSTROOM_DNS_SERVER`` when set, else the system resolver (getaddrinfo)."""

    def __init__(self, nameserver: str | None, *, timeout: float = 5.0) -> None:
        self._dns: dns.asyncresolver.Resolver | None = None
        if nameserver is not None:
            from postroom.core.resolver import make_resolver

            self._dns = make_resolver(nameserver, timeout=timeout)
        self._timeout = timeout

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        if self._dns is not None:
            return await self._from_dns(self._dns, host)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), self._timeout
            )
        except (OSError, TimeoutError, UnicodeError):
            return []
        found: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in infos:
            text = str(sockaddr[0]).split("%", 1)[0]
            found.append(ip_address(text))
        return list(dict.fromkeys(found))

    @staticmethod
    async def _from_dns(resolver: dns.asyncresolver.Resolver, host: str) -> list[IPAddress]:
        try:
            name = dns.name.from_text(host)
        except dns.exception.DNSException:
            return []

        async def lookup(rtype: str) -> list[IPAddress]:
            try:
                answer = await resolver.resolve(name, rtype, search=False)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
                return []
            except dns.exception.DNSException:
                return []
            return [ip_address(record.to_text()) for record in answer]

        v4, v6 = await asyncio.gather(lookup("A"), lookup("AAAA"))
        return list(dict.fromkeys([*v4, *v6]))


def check_addresses(target: Target, addresses: Sequence[IPAddress], *, allow_private: bool) -> Destination:
    """The destination if every address is allowed (or ``allow_private``); else ``DestinationRefused``."""
    if not addresses:
        raise UnresolvableDestination(UNRESOLVABLE, f"{target.host}: no addresses")
    if not allow_private:
        for address in addresses:
            reason = refusal_reason(address)
            if reason is not None:
                raise DestinationRefused(NOT_ALLOWED, f"{target.host} -> {address}: {reason}")
    return Destination(target=target, addresses=tuple(addresses))


async def resolve(url: str | Target, *, resolver: HostResolver, allow_private: bool) -> Destination:
    """Resolve the URL's host once and check every address it has (see the module docstring)."""
    target = url if isinstance(url, Target) else _target_or_refuse(url)
    literal = literal_address(target.host)
    if literal is not None:
        if isinstance(literal, IPv6Address) and literal.scope_id:
            raise DestinationRefused(NOT_ALLOWED, f"{target.host}: zone id")
        return check_addresses(target, [literal], allow_private=allow_private)
    if not allow_private and (target.host == "localhost" or target.host.endswith(".localhost")):
        raise DestinationRefused(NOT_ALLOWED, f"{target.host}: localhost name")
    return check_addresses(target, await resolver.addresses(target.host, target.port), allow_private=allow_private)


def _target_or_refuse(url: str) -> Target:
    try:
        return parse_target(url)
    except ValueError as exc:
        raise DestinationRefused(str(exc)) from None
