"""IP addresses, CIDR ranges and allowlists.

Two facts of Python's ``ipaddress`` shape this module:

- ``ip_address('::ffff:10.1.2.3') in ip_network('10.0.0.0/8')`` is False, so IPv4-mapped IPv6 is turned into
  plain IPv4 on *both* sides before any comparison;
- ``ip_network('10.0.0.1/24')`` raises "has host bits set"; we refuse such an entry rather than silently
  widening or narrowing what the user typed, and say which network they probably meant.

An allowlist is stored in canonical text (``203.0.113.50, 198.51.100.0/24``). ``0.0.0.0/0`` admits every IPv4
client and ``::/0`` every IPv6 client; neither implies the other.
"""

from __future__ import annotations

import functools
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

MAX_ALLOWLIST_ENTRIES = 100
MAX_ALLOWLIST_CHARS = 4096

_MAPPED_PREFIX = IPv6Network("::ffff:0:0/96")


class AllowlistError(ValueError):
    """One or more allowlist entries could not be accepted; ``str()`` names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def normalise_ip(address: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (``::ffff:a.b.c.d``) becomes the IPv4 address it carries; anything else is unchanged."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_ip(text: str) -> IPAddress | None:
    """A single address, strictly parsed and normalised; None when ``text`` is not one.

    Zone ids (``fe80::1%eth0``) are refused: they name an interface of the machine that wrote them.
    """
    if "%" in text:
        return None
    try:
        return normalise_ip(ip_address(text))
    except ValueError:
        return None


def _normalise_network(network: IPNetwork) -> IPNetwork:
    if isinstance(network, IPv6Network) and network.prefixlen >= 96 and network.subnet_of(_MAPPED_PREFIX):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return IPv4Network((mapped, network.prefixlen - 96))
    return network


def parse_network(entry: str) -> IPNetwork:
    """One allowlist entry (an address or a CIDR range) as a network; raises ``ValueError`` saying why not."""
    if "%" in entry:
        raise ValueError(f"'{entry}' has a zone id; write the address without '%…'")
    try:
        return _normalise_network(ip_network(entry, strict=True))
    except ValueError as exc:
        if "host bits set" in str(exc):
            widened = ip_network(entry, strict=False)
            raise ValueError(f"'{entry}' has host bits set (did you mean {widened}?)") from None
        raise ValueError(f"'{entry}' is not an IP address or CIDR range") from None


def parse_allowlist(text: str) -> tuple[IPNetwork, ...]:
    """Parse a comma-separated allowlist; whitespace and empty entries are ignored, duplicates dropped.

    Raises ``AllowlistError`` naming every bad entry; nothing is accepted partially.
    """
    if len(text) > MAX_ALLOWLIST_CHARS:
        raise AllowlistError([f"the list is longer than {MAX_ALLOWLIST_CHARS} characters"])
    networks: list[IPNetwork] = []
    problems: list[str] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            network = parse_network(entry)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if network not in networks:
            networks.append(network)
    if len(networks) > MAX_ALLOWLIST_ENTRIES:
        problems.append(f"the list has more than {MAX_ALLOWLIST_ENTRIES} entries")
    if problems:
        raise AllowlistError(problems)
    return tuple(networks)


def format_allowlist(networks: tuple[IPNetwork, ...]) -> str:
    """Canonical text: single addresses without a prefix length, ranges as CIDR, joined by ``, ``."""
    return ", ".join(str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in networks)


@functools.lru_cache(maxsize=4096)
def stored_allowlist(text: str) -> tuple[IPNetwork, ...]:
    """Parse an allowlist as stored in the database (already canonical).

    A pure function of the stored text, so caching it can never keep a changed list alive.
    """
    return parse_allowlist(text)


def ip_in(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """Whether ``address`` (normalised) falls inside any of ``networks``."""
    address = normalise_ip(address)
    return any(address.version == n.version and address in n for n in networks)


def ip_allowed(address: IPAddress | None, networks: tuple[IPNetwork, ...]) -> bool:
    """The allowlist rule: no list admits everyone; a list admits only addresses inside it.

    An unknown client address (a Unix socket, garbage forwarded by a proxy) is refused by any list.
    """
    if not networks:
        return True
    if address is None:
        return False
    return ip_in(address, networks)
