"""MX resolution against a real DNS server on loopback: ordering, implicit MX, null MX, and how failures are
classified (permanent → bounce, temporary → retry)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import dns.asyncresolver
import pytest

from postroom.core.resolver import make_resolver
from postroom.delivery.mx import MxHost, MxLookupError, resolve_addresses, resolve_mx
from tests.support.dns_server import TIMEOUT, DnsServer

DKIM_2048 = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x" * 330 + "IDAQAB"


@pytest.fixture(scope="module")
def server() -> Iterator[DnsServer]:
    with DnsServer() as srv:
        yield srv


@pytest.fixture
def dns_server(server: DnsServer) -> Iterator[DnsServer]:
    server.clear()
    yield server
    server.clear()


@pytest.fixture
def resolver(dns_server: DnsServer) -> dns.asyncresolver.Resolver:
    return make_resolver(dns_server.address, timeout=3)


def mx(domain: str, resolver: dns.asyncresolver.Resolver) -> list[MxHost]:
    return asyncio.run(resolve_mx(domain, resolver))


def mx_error(domain: str, resolver: dns.asyncresolver.Resolver) -> MxLookupError:
    with pytest.raises(MxLookupError) as excinfo:
        mx(domain, resolver)
    return excinfo.value


# -- make_resolver ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "host", "port"),
    [
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("127.0.0.1", "127.0.0.1", 53),
        ("[::1]:53", "::1", 53),
        ("[::1]:5300", "::1", 5300),
        ("[2001:db8::1]", "2001:db8::1", 53),
        ("::1", "::1", 53),
        (" 10.0.0.2:54 ", "10.0.0.2", 54),
    ],
)
def test_make_resolver_parses_the_setting(setting: str, host: str, port: int) -> None:
    resolver = make_resolver(setting, timeout=1.5)
    assert list(resolver.nameservers) == [host]
    assert resolver.port == port
    assert resolver.lifetime == 1.5
    assert resolver.timeout <= 1.5
    assert resolver.search == []  # configure=False: nothing from /etc/resolv.conf


@pytest.mark.parametrize(
    "setting", ["dns.example.com", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x", "[::1", "[::1]x", ""]
)
def test_make_resolver_refuses_bad_settings(setting: str) -> None:
    with pytest.raises(ValueError, match="DNS server"):
        make_resolver(setting)


@pytest.mark.skipif(not os.path.exists("/etc/resolv.conf"), reason="no /etc/resolv.conf")
def test_make_resolver_without_a_setting_uses_the_system_resolver() -> None:
    resolver = make_resolver(None, timeout=2)
    assert resolver.nameservers
    assert resolver.lifetime == 2


# -- resolve_mx -------------------------------------------------------------------------------------------------


def test_mx_records_come_back_by_preference(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("example.test", "MX", "20 backup.example.test.")
    dns_server.add("example.test", "MX", "10 mx2.example.test")
    dns_server.add("Example.Test.", "MX", "10 mx1.example.test")
    dns_server.add("example.test", "MX", "5 primary.example.test")
    assert mx("example.test", resolver) == [
        MxHost(5, "primary.example.test"),
        MxHost(10, "mx1.example.test"),
        MxHost(10, "mx2.example.test"),
        MxHost(20, "backup.example.test"),
    ]
    # Names are case-insensitive and a final dot changes nothing.
    assert mx("EXAMPLE.test.", resolver)[0] == MxHost(5, "primary.example.test")


def test_records_can_change_while_the_server_runs(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("change.test", "MX", "10 old.change.test")
    assert mx("change.test", resolver) == [MxHost(10, "old.change.test")]
    dns_server.remove("change.test", "MX")
    dns_server.add("change.test", "MX", "10 new.change.test")
    assert mx("change.test", resolver) == [MxHost(10, "new.change.test")]


def test_a_record_without_mx_is_an_implicit_mx(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("plain.test", "A", "192.0.2.10")
    assert mx("plain.test", resolver) == [MxHost(0, "plain.test")]


def test_aaaa_only_is_an_implicit_mx_too(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("v6.test", "AAAA", "2001:db8::25")
    assert mx("v6.test.", resolver) == [MxHost(0, "v6.test")]


def test_null_mx_is_permanent(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("nomail.test", "MX", "0 .")
    dns_server.add("nomail.test", "A", "192.0.2.1")  # an address must not turn a null MX into an implicit one
    error = mx_error("nomail.test", resolver)
    assert (error.permanent, error.kind) == (True, "null_mx")


def test_nxdomain_is_permanent(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    error = mx_error("does-not-exist.test", resolver)
    assert (error.permanent, error.kind) == (True, "nxdomain")
    assert "does-not-exist.test" in str(error)


def test_servfail_is_temporary(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("broken.test", "MX", "10 mx.broken.test")
    dns_server.set_failure("broken.test", "SERVFAIL")
    error = mx_error("broken.test", resolver)
    assert (error.permanent, error.kind) == (False, "dns_temporary")
    dns_server.set_failure("broken.test", None)
    assert mx("broken.test", resolver) == [MxHost(10, "mx.broken.test")]


def test_timeout_is_temporary(dns_server: DnsServer) -> None:
    dns_server.set_failure("slow.test", TIMEOUT)
    error = mx_error("slow.test", make_resolver(dns_server.address, timeout=0.5))
    assert (error.permanent, error.kind) == (False, "dns_temporary")


def test_unreachable_nameserver_is_temporary() -> None:
    with DnsServer() as gone:
        address = gone.address
    error = mx_error("example.test", make_resolver(address, timeout=1))
    assert (error.permanent, error.kind) == (False, "dns_temporary")


def test_no_mx_and_no_address_is_permanent(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("txtonly.test", "TXT", "v=spf1 -all")
    error = mx_error("txtonly.test", resolver)
    assert (error.permanent, error.kind) == (True, "no_mx")


def test_servfail_on_the_address_fallback_is_temporary(
    dns_server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    # The MX lookup answers NODATA but A fails: we cannot know there is no implicit MX, so retry later.
    dns_server.add("half.test", "TXT", "x")
    dns_server.set_failure("half.test", "SERVFAIL")
    assert mx_error("half.test", resolver).kind == "dns_temporary"


def test_invalid_domain_is_permanent(resolver: dns.asyncresolver.Resolver) -> None:
    error = mx_error("a..b.test", resolver)
    assert error.permanent


# -- resolve_addresses ------------------------------------------------------------------------------------------


def test_addresses_are_ipv4_then_ipv6(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("mx1.example.test", "AAAA", "2001:db8::1")
    dns_server.add("mx1.example.test", "A", "192.0.2.1")
    assert asyncio.run(resolve_addresses("mx1.example.test", resolver)) == ["192.0.2.1", "2001:db8::1"]


def test_addresses_follow_cnames(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.add("alias.example.test", "CNAME", "real.example.test")
    dns_server.add("real.example.test", "A", "192.0.2.7")
    assert asyncio.run(resolve_addresses("alias.example.test", resolver)) == ["192.0.2.7"]


def test_host_without_addresses_gives_an_empty_list(
    dns_server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    dns_server.add("bare.example.test", "TXT", "nothing here")
    assert asyncio.run(resolve_addresses("bare.example.test", resolver)) == []
    assert asyncio.run(resolve_addresses("missing.example.test", resolver)) == []


def test_address_lookup_failure_is_temporary(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    dns_server.set_failure("mx.flaky.test", "SERVFAIL")
    with pytest.raises(MxLookupError) as excinfo:
        asyncio.run(resolve_addresses("mx.flaky.test", resolver))
    assert (excinfo.value.permanent, excinfo.value.kind) == (False, "dns_temporary")


# -- the test server itself: long TXT records -------------------------------------------------------------------


async def _txt(name: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    answer = await resolver.resolve(name, "TXT")
    return [b"".join(rdata.strings).decode() for rdata in answer]


def test_long_txt_is_split_on_the_wire_and_reads_back_whole(
    dns_server: DnsServer, resolver: dns.asyncresolver.Resolver
) -> None:
    assert len(DKIM_2048) > 255
    dns_server.add("s1._domainkey.example.test", "TXT", DKIM_2048)
    answer = asyncio.run(resolver.resolve("s1._domainkey.example.test", "TXT"))
    strings = answer[0].strings
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert asyncio.run(_txt("s1._domainkey.example.test", resolver)) == [DKIM_2048]


def test_txt_too_big_for_udp_arrives_over_tcp(dns_server: DnsServer, resolver: dns.asyncresolver.Resolver) -> None:
    huge = "v=DKIM1; k=rsa; p=" + "A" * 3000  # larger than a 512-byte UDP reply: truncated, then TCP
    dns_server.add("big._domainkey.example.test", "TXT", huge)
    assert asyncio.run(_txt("big._domainkey.example.test", resolver)) == [huge]
    protocols = [q.protocol for q in dns_server.queries if q.name == "big._domainkey.example.test"]
    assert protocols == ["udp", "tcp"]
