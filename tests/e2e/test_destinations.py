"""A slow recipient server holds at most its destination's cap of the worker: with one destination holding DATA
(a tarpit on its own loopback address), mail to other destinations arrives as fast as without it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lettr import Lettr

from tests.conftest import Backend, Server, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink
from tests.system.cluster import ensure_sending_domain

TARPIT_CAP = 2


@pytest.fixture
def tarpit(dns_server: DnsServer, smtp_sink: SmtpSink) -> Iterator[SmtpSink]:
    """tarpit.test's mail server: another loopback address, the same port as every MX in the tests."""
    dns_server.add("tarpit.test", "MX", "10 mx.tarpit.test")
    dns_server.add("mx.tarpit.test", "A", "127.0.0.2")
    with SmtpSink(hostname="127.0.0.2", port=smtp_sink.port) as server:
        yield server


@pytest.fixture
def capped_server(own_backend: Backend, dns_server: DnsServer, smtp_sink: SmtpSink, tmp_path: Path) -> Iterator[Server]:
    ensure_sending_domain(own_backend)
    env = {
        **mail_env(dns_server, smtp_sink),
        "POSTROOM_DESTINATION_CONCURRENCY": str(TARPIT_CAP),
        "POSTROOM_WORKER_SHUTDOWN_TIMEOUT": "1",
        "POSTROOM_RATE_LIMIT": "off",
        "POSTROOM_SEND_RATE_LIMIT": "off",
    }
    server = Server(own_backend, tmp_path / "server.log", env=env).start()
    yield server
    server.stop()


def _delivery_seconds(client: Lettr, sink: SmtpSink, count: int, tag: str) -> list[float]:
    """Send ``count`` messages one after another; how long each took from its send to its arrival."""
    sent: dict[str, float] = {}
    already = len(sink.messages)
    for i in range(count):
        address = f"{tag}-{i}@example.test"
        sent[address] = time.monotonic()
        client.emails.send(from_email="a@sender.test", to=[address], subject=tag, text="x")
    arrived = sink.wait_for(already + count, timeout=60)[already:]
    return [m.received_at - sent[m.rcpt_tos[0]] for m in arrived]


def test_a_tarpitting_destination_does_not_hold_up_mail_to_others(
    capped_server: Server, own_backend: Backend, sink: SmtpSink, tarpit: SmtpSink
) -> None:
    client = Lettr(own_backend.create_key().key, base_url=capped_server.api_url)
    alone = _delivery_seconds(client, sink, 100, "alone")

    tarpit.hold_data(120)
    for i in range(32):  # twice the worker's 16 slots
        client.emails.send(from_email="a@sender.test", to=[f"slow-{i}@tarpit.test"], subject="slow", text="x")
    deadline = time.monotonic() + 30
    while tarpit.sessions < TARPIT_CAP:  # the tarpit holds its cap's worth of deliveries in DATA
        assert time.monotonic() < deadline, "no delivery reached the tarpit"
        time.sleep(0.05)
    beside = _delivery_seconds(client, sink, 200, "beside")
    held = tarpit.sessions
    tarpit.hold_data(0)

    p50_alone, p50_beside = statistics.median(alone), statistics.median(beside)
    assert held == TARPIT_CAP, "the tarpit got more sessions than its cap"
    assert not tarpit.messages  # still held when the others had all arrived
    # within 2x of the p50 alone (plus 20 ms, the scheduling noise of a loaded test machine)
    assert p50_beside <= 2 * p50_alone + 0.02, (p50_alone, p50_beside)
    assert max(beside) < 10, max(beside)  # none waited for the tarpit (it holds DATA for 120 s)
