"""Contacts and real mail, through a real SMTP server on loopback.

Double opt-in on contact create: the contact starts unverified, the confirmation goes out through the normal send
path, and its signed link confirms the contact exactly once; a missing template or a send that cannot be queued
leaves no contact behind. A real hard bounce from delivery marks the contact bounced."""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import time
from email.message import EmailMessage
from typing import Any

import pytest
from lettr import Lettr
from lettr._exceptions import NotFoundError, ServerError

from postroom.audience import service
from postroom.core.clock import utcnow
from postroom.domains.service import SendingDomain
from postroom.emails import service as emails_service
from tests.conftest import Backend, Server
from tests.support.smtp_sink import SmtpSink

LINK = re.compile(r'href="(?P<base>[^"]*)/opt-in/(?P<token>[A-Za-z0-9_.=-]+)"')


def _opt_in(slug: str) -> dict[str, Any]:
    return {"from": "news@sender.test", "from_name": "News", "subject": "Please confirm", "template_slug": slug,
            "redirect_url": "https://example.test/welcome"}  # fmt: skip


@pytest.fixture
def client(backend: Backend, server: Server, sending_domain: SendingDomain) -> Lettr:
    return Lettr(backend.create_key().key, base_url=server.api_url)


def test_the_confirmation_is_sent_and_its_link_confirms_once(
    client: Lettr, backend: Backend, server: Server, sink: SmtpSink
) -> None:
    template = client.templates.create(
        name=f"Confirm {secrets.token_hex(3)}", html='<p><a href="{{confirmation_url}}">Confirm {{email}}</a></p>'
    )
    address = f"optin-{secrets.token_hex(4)}@example.test"
    contact = client.audience.contacts.create(email=address, double_opt_in=_opt_in(template.slug))
    assert contact.status == "unverified"

    received = sink.wait_for(1, timeout=30)[0]
    assert received.rcpt_tos == [address]
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage) and parsed["Subject"] == "Please confirm"
    html = parsed.get_body(("html",))
    assert html is not None
    link = LINK.search(html.get_content())
    assert link and link.group("base") == server.base_url, html.get_content()
    token = link.group("token")

    def confirm(value: str) -> Any:
        return backend.write(
            lambda conn: service.confirm_opt_in(conn, secret=backend.settings.server_secret, token=value, now=utcnow())
        )

    forged = token[:-2] + ("00" if not token.endswith("00") else "11")
    assert confirm(forged) is None
    assert client.audience.contacts.get(contact.id).status == "unverified"
    assert confirm(token) == "https://example.test/welcome"
    assert client.audience.contacts.get(contact.id).status == "subscribed"
    assert confirm(token) is None  # works once


def test_a_missing_template_or_an_unqueueable_send_creates_no_contact(client: Lettr, backend: Backend) -> None:
    address = f"nobody-{secrets.token_hex(4)}@example.test"
    with pytest.raises(NotFoundError) as missing:
        client.audience.contacts.create(email=address, double_opt_in=_opt_in("no-such-template"))
    assert missing.value.error_code == "template_not_found"
    template = client.templates.create(name=f"Confirm {secrets.token_hex(3)}", html="<p>{{confirmation_url}}</p>")
    backend.write(
        lambda conn: emails_service.suppress(
            conn, team_id=backend.team_id, email=address, reason="hard_bounce", source="test", now=utcnow()
        )
    )
    with pytest.raises(ServerError) as failed:
        client.audience.contacts.create(email=address, double_opt_in=_opt_in(template.slug))
    assert failed.value.error_code == "transmission_failed"
    assert client.audience.contacts.list(search=address).total == 0


def test_a_real_hard_bounce_marks_the_contact_bounced(client: Lettr, sink: SmtpSink) -> None:
    address = f"gone-{secrets.token_hex(4)}@example.test"
    contact = client.audience.contacts.create(email=address)
    sink.reject_recipient(address, 550, "5.1.1 No such user")
    client.emails.send(from_email="news@sender.test", to=[address], subject="Hi", text="x")
    deadline = time.monotonic() + 30
    while client.audience.contacts.get(contact.id).status != "bounced":
        assert time.monotonic() < deadline, "the contact never became bounced"
        time.sleep(0.1)
    suppressed = client.audience.contacts.list(status="bounced", search=address)
    assert [c.id for c in suppressed.contacts] == [contact.id]
