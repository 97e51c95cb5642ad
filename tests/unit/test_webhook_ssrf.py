"""The webhook SSRF guard against internal addresses in every written form, names resolving to them and legacy
numeric hosts, through a real resolver (the loopback DNS server) and a real listener that must never see a
connection."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from postroom.core.netaddr import normalise_ip
from postroom.webhooks import ssrf
from postroom.webhooks.delivery import Credentials, WebhookSender
from tests.support.dns_server import DnsServer

LITERAL_VECTORS = [
    "http://0x7f.1/",
    "http://2130706433/",
    "http://127.1/",
    "http://0177.0.0.1/",
    "http://017700000001/",
    "http://127.0.0.1/",
    "http://0/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fc00::1]/",
    "http://[fe80::1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[64:ff9b:1::a00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    "http://224.0.0.1/",
    "http://255.255.255.255/",
    "https://198.18.0.1/",
    "http://localhost/",
    "http://localhost./",
    "http://api.localhost/",
]


@pytest.fixture(scope="module")
def names() -> Iterator[DnsServer]:
    with DnsServer() as dns:
        dns.add("metadata.test", "A", "169.254.169.254")
        dns.add("loop.test", "A", "127.0.0.1")
        dns.add("loop6.test", "AAAA", "::1")
        dns.add("mapped.test", "AAAA", "::ffff:10.0.0.1")
        dns.add("mixed.test", "A", "93.184.216.34")
        dns.add("mixed.test", "A", "10.1.2.3")
        dns.add("alias.test", "CNAME", "metadata.test")
        dns.add("public.test", "A", "93.184.216.34")
        dns.add("public.test", "AAAA", "2606:2800:220:1:248:1893:25c8:1946")
        yield dns


def resolve(url: str, dns: DnsServer, *, allow_private: bool = False) -> ssrf.Destination:
    return asyncio.run(ssrf.resolve(url, resolver=ssrf.HostResolver(dns.address), allow_private=allow_private))


@pytest.mark.parametrize("url", LITERAL_VECTORS)
def test_every_internal_address_form_is_refused(url: str, names: DnsServer) -> None:
    with pytest.raises(ssrf.DestinationRefused) as refused:
        resolve(url, names)
    # Generic: nothing about what lives there. (httpx already refuses some spellings as URLs, e.g. 0177.0.0.1.)
    assert str(refused.value) in (ssrf.NOT_ALLOWED, "The url must be a valid URL.")


@pytest.mark.parametrize(
    "host", ["metadata.test", "loop.test", "loop6.test", "mapped.test", "mixed.test", "alias.test"]
)
def test_a_name_resolving_to_any_internal_address_is_refused(host: str, names: DnsServer) -> None:
    with pytest.raises(ssrf.DestinationRefused):
        resolve(f"https://{host}/hook", names)


def test_a_public_name_resolves_to_its_checked_addresses(names: DnsServer) -> None:
    destination = resolve("https://Public.Test:8443/hook?x=1", names)
    assert destination.target.host == "public.test"
    assert destination.target.host_header == "public.test:8443"
    assert destination.target.path == "/hook?x=1"
    assert {str(a) for a in destination.addresses} == {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"}
    assert destination.address == "93.184.216.34"


def test_a_name_that_does_not_resolve_is_refused_as_unresolvable(names: DnsServer) -> None:
    with pytest.raises(ssrf.UnresolvableDestination):
        resolve("https://nowhere.test/", names)


@pytest.mark.parametrize("url", ["http://127.1/", "http://[::ffff:127.0.0.1]/", "http://loop.test/"])
def test_allow_private_lifts_the_address_check(url: str, names: DnsServer) -> None:
    [address] = resolve(url, names, allow_private=True).addresses
    assert normalise_ip(address) == IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "https:// or http://"),
        ("https://user:pw@example.com/", "user name or password"),
        ("not a url", "https:// or http://"),
        ("https:///path", "host"),
    ],
)
def test_urls_that_cannot_be_webhooks_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ssrf.parse_target(url)


def test_legacy_numeric_hosts_are_read_as_the_c_resolver_reads_them() -> None:
    assert str(ssrf.literal_address("0x7f.1")) == "127.0.0.1"
    assert str(ssrf.literal_address("2130706433")) == "127.0.0.1"
    assert str(ssrf.literal_address("0xdeadbeef")) == "222.173.190.239"
    assert ssrf.literal_address("127.0.0.1 evil.example") is None  # glibc would take the prefix
    assert ssrf.literal_address("deadbeef") is None  # a name, not a number


class _Listener:
    """A loopback TCP listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "2130706433", "[::ffff:127.0.0.1]", "loop.test", "localhost"])
def test_a_refused_delivery_never_connects(host: str, names: DnsServer) -> None:
    listener = _Listener()
    try:

        async def attempt() -> tuple[int | None, str | None]:
            sender = WebhookSender(resolver=ssrf.HostResolver(names.address), allow_private=False)
            try:
                result = await sender.post(
                    f"http://{host}:{listener.port}/hook", b"[]", {}, Credentials("none"), timeout=5
                )
            finally:
                await sender.close()
            return result.status_code, result.error

        status, error = asyncio.run(attempt())
        assert status is None
        assert error == ssrf.NOT_ALLOWED
        assert listener.accepted == 0
    finally:
        listener.close()


def test_an_allowed_delivery_connects_to_the_checked_address(names: DnsServer) -> None:
    listener = _Listener()
    try:

        async def attempt() -> str | None:
            sender = WebhookSender(resolver=ssrf.HostResolver(names.address), allow_private=True)
            try:
                result = await sender.post(
                    f"http://loop.test:{listener.port}/hook", b"[]", {}, Credentials("none"), timeout=5
                )
            finally:
                await sender.close()
            return result.error

        error = asyncio.run(attempt())
        assert error is not None  # the listener hangs up without answering
        assert listener.accepted == 1
    finally:
        listener.close()
