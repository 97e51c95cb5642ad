"""Allowlist parsing and matching: a table of cases and a property against a reference."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postroom.core.netaddr import AllowlistError, format_allowlist, ip_allowed, parse_allowlist, parse_ip


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("203.0.113.50, 198.51.100.0/24, 10.0.0.1", "203.0.113.50, 198.51.100.0/24, 10.0.0.1"),
        ("  203.0.113.50 ,\t198.51.100.0/24\n", "203.0.113.50, 198.51.100.0/24"),
        ("1.2.3.4,,1.2.3.4, ", "1.2.3.4"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ("1.2.3.4/32, ::1/128", "1.2.3.4, ::1"),
        ("", ""),
    ],
)
def test_allowlists_are_stored_canonically(text: str, canonical: str) -> None:
    assert format_allowlist(parse_allowlist(text)) == canonical


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10.0.0.1/24", "'10.0.0.1/24' has host bits set (did you mean 10.0.0.0/24?)"),
        ("1.2.3", "'1.2.3' is not an IP address or CIDR range"),
        ("010.1.1.1", "'010.1.1.1' is not an IP address or CIDR range"),
        ("127.1", "'127.1' is not an IP address or CIDR range"),
        ("0x7f.0.0.1", "'0x7f.0.0.1' is not an IP address or CIDR range"),
        ("fe80::1%eth0", "'fe80::1%eth0' has a zone id; write the address without '%…'"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or CIDR range"),
        ("foo", "'foo' is not an IP address or CIDR range"),
        ("*", "'*' is not an IP address or CIDR range"),
        ("1.2.3.4 5.6.7.8", "'1.2.3.4 5.6.7.8' is not an IP address or CIDR range"),
    ],
)
def test_bad_entries_are_refused_by_name(text: str, problem: str) -> None:
    with pytest.raises(AllowlistError) as excinfo:
        parse_allowlist(f"203.0.113.50, {text}")
    assert excinfo.value.problems == [problem]


def test_every_bad_entry_is_named_at_once() -> None:
    with pytest.raises(AllowlistError) as excinfo:
        parse_allowlist("foo, 1.2.3.4, 10.0.0.1/8")
    assert len(excinfo.value.problems) == 2
    assert "'foo'" in str(excinfo.value) and "'10.0.0.1/8'" in str(excinfo.value)


def test_lists_are_capped() -> None:
    with pytest.raises(AllowlistError, match="more than 100 entries"):
        parse_allowlist(", ".join(f"10.0.{i // 256}.{i % 256}" for i in range(101)))
    with pytest.raises(AllowlistError, match="longer than 4096"):
        parse_allowlist("1.2.3.4," * 600)


@pytest.mark.parametrize(
    ("allowlist", "client", "allowed"),
    [
        ("", "198.51.100.1", True),
        ("", None, True),
        ("203.0.113.50", "203.0.113.50", True),
        ("203.0.113.50", "203.0.113.51", False),
        ("198.51.100.0/24", "198.51.100.0", True),
        ("198.51.100.0/24", "198.51.100.255", True),
        ("198.51.100.0/24", "198.51.101.0", False),
        ("198.51.100.0/24", "198.51.99.255", False),
        ("203.0.113.0/24", "::ffff:203.0.113.7", True),
        ("::ffff:203.0.113.7", "203.0.113.7", True),
        ("2001:db8::/32", "2001:db8:ffff::1", True),
        ("2001:db8::/32", "2001:db9::1", False),
        ("0.0.0.0/0", "::1", False),
        ("0.0.0.0/0, ::/0", "::1", True),
        ("::/0", "1.2.3.4", False),
        ("10.0.0.1", None, False),
        ("1.2.3.4/31", "1.2.3.5", True),
        ("1.2.3.4/31", "1.2.3.6", False),
    ],
)
def test_matching(allowlist: str, client: str | None, allowed: bool) -> None:
    address = None if client is None else parse_ip(client)
    assert ip_allowed(address, parse_allowlist(allowlist)) is allowed


def _reference(client: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: list[str]) -> bool:
    def norm(a: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return a.ipv4_mapped if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped else a

    c = norm(client)
    for text in networks:
        net = ipaddress.ip_network(text)
        if (
            isinstance(net, ipaddress.IPv6Network)
            and net.prefixlen >= 96
            and norm(net.network_address) != net.network_address
        ):
            net = ipaddress.ip_network(f"{norm(net.network_address)}/{net.prefixlen - 96}")
        if c.version == net.version and c in net:
            return True
    return False


v4 = st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address)
v6 = st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address)
mapped = v4.map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}"))
addresses = st.one_of(v4, v6, mapped)


@st.composite
def networks(draw: st.DrawFn) -> str:
    address = draw(addresses)
    prefix = draw(st.integers(0, address.max_prefixlen))
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@given(client=addresses, entries=st.lists(networks(), min_size=1, max_size=5))
def test_matching_agrees_with_a_normalising_reference(client, entries) -> None:  # type: ignore[no-untyped-def]
    assert ip_allowed(parse_ip(str(client)), parse_allowlist(", ".join(entries))) == _reference(client, entries)
