"""A recipient that keeps failing temporarily bounces once the delivery lifetime is over; a relay, when set,
receives all mail."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lettr import Lettr

from tests.conftest import Backend, Server, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink
from tests.system.cluster import ensure_sending_domain


@pytest.fixture
def short_lived_server(
    own_backend: Backend, dns_server: DnsServer, smtp_sink: SmtpSink, tmp_path: Path
) -> Iterator[Server]:
    ensure_sending_domain(own_backend)
    env = {**mail_env(dns_server, smtp_sink), "POSTROOM_DELIVERY_LIFETIME": "3"}
    server = Server(own_backend, tmp_path / "server.log", env=env).start()
    yield server
    server.stop()


def test_a_recipient_deferred_past_the_lifetime_bounces_without_suppression(
    short_lived_server: Server, own_backend: Backend, sink: SmtpSink
) -> None:
    sink.defer_recipient("stuck@example.test", times=1000, code=451, message="4.3.0 Try again later")
    client = Lettr(own_backend.create_key().key, base_url=short_lived_server.api_url)
    sent = client.emails.send(from_email="a@sender.test", to=["stuck@example.test"], subject="s", text="x")
    deadline = time.monotonic() + 30
    while (detail := client.emails.get(sent.request_id)).state != "bounced":
        assert time.monotonic() < deadline, [e.type for e in detail.events]
        time.sleep(0.2)
    [bounce] = [e for e in detail.events if e.type == "bounce"]
    assert bounce.reason is not None and bounce.reason.startswith("Delivery time expired after")
    assert bounce.raw_reason == "451 4.3.0 Try again later"
    assert any(e.type == "delay" for e in detail.events)
    assert sink.rcpt_attempts("stuck@example.test") >= 2
    # a temporary failure says nothing about the address: it is not suppressed
    again = client.emails.send(from_email="a@sender.test", to=["stuck@example.test"], subject="s", text="x")
    assert (again.accepted, again.rejected) == (1, 0)


def test_with_a_relay_every_message_goes_to_it(own_backend: Backend, tmp_path: Path) -> None:
    ensure_sending_domain(own_backend)
    with SmtpSink() as relay:
        # no DNS server configured: a recipient domain that resolves nowhere still reaches the relay
        env = {"POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{relay.port}", "POSTROOM_MAIL_HOSTNAME": "postroom.test"}
        server = Server(own_backend, tmp_path / "relay.log", env=env).start()
        try:
            client = Lettr(own_backend.create_key().key, base_url=server.api_url)
            client.emails.send(
                from_email="a@sender.test",
                to=["x@nowhere.invalid", "y@elsewhere.invalid"],
                subject="via relay",
                text="x",
            )
            received = relay.wait_for(2)
        finally:
            server.stop()
    assert sorted(r for m in received for r in m.rcpt_tos) == ["x@nowhere.invalid", "y@elsewhere.invalid"]
    assert email.message_from_bytes(received[0].data)["Subject"] == "via relay"
