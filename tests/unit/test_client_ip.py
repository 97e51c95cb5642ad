"""Client address from the socket peer and X-Forwarded-For."""

from __future__ import annotations

import pytest

from postroom.auth.client_ip import client_ip
from postroom.core.netaddr import parse_allowlist

TRUSTED = parse_allowlist("10.0.0.0/8, 2001:db8:cafe::/48")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),  # untrusted peer: header ignored
        ("::ffff:203.0.113.9", [], "203.0.113.9"),  # mapped peer normalised
        ("10.0.0.1", [], "10.0.0.1"),  # trusted peer without header
        ("10.0.0.1", ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),  # right-most untrusted hop
        ("10.0.0.1", ["6.6.6.6", "203.0.113.7"], "203.0.113.7"),  # several lines, in order
        ("10.0.0.1", ["203.0.113.7, 10.9.9.9"], "203.0.113.7"),  # chain of trusted proxies
        ("10.0.0.1", ["10.1.1.1, 10.2.2.2"], "10.1.1.1"),  # every hop trusted: left-most
        ("::ffff:10.0.0.1", ["::ffff:203.0.113.7"], "203.0.113.7"),  # mapped on both sides
        ("2001:db8:cafe::1", ["2001:db8::42"], "2001:db8::42"),
        ("10.0.0.1", ["203.0.113.7:4711"], "203.0.113.7"),  # a port on the hop
        ("10.0.0.1", ["[2001:db8::42]:443"], "2001:db8::42"),
        ("10.0.0.1", ["unknown"], None),  # not an address: unknown, fails any allowlist
        ("10.0.0.1", ["203.0.113.7, garbage"], None),
        ("10.0.0.1", [" , "], "10.0.0.1"),  # empty entries ignored
        (None, ["1.2.3.4"], None),  # a Unix socket has no peer address
        ("not-an-ip", [], None),
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str | None) -> None:
    result = client_ip(peer, forwarded, TRUSTED)
    assert (None if result is None else str(result)) == expected


def test_without_trusted_proxies_forwarded_headers_are_never_read() -> None:
    assert str(client_ip("10.0.0.1", ["203.0.113.7"], ())) == "10.0.0.1"
