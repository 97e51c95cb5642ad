"""Hostile and unusual SMTP submissions against a live server with real clients (smtplib, swaks), both databases:
encoded words that decode to control characters, Bcc-only mail, long folded headers, text attachments with a
charset, and how text parts are encoded. Delivered messages are read back from the loopback sink and their DKIM
signatures verified with dkimpy."""

from __future__ import annotations

import base64
import email
import email.policy
import time
from email.message import EmailMessage

import pytest

from postroom.domains.service import SendingDomain
from tests.e2e.test_smtp_relay import Relay, compose, dkim_verifies, key, relay, run_swaks, submit, swaks
from tests.support.smtp_sink import ReceivedMessage, SmtpSink

__all__ = ["key", "relay"]  # the relay server and key fixtures of test_smtp_relay, used here too


def word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def wire(message: EmailMessage) -> bytes:
    """The message with CRLF line ends, as smtplib sends bytes unchanged (``as_bytes`` ends lines with LF)."""
    return message.as_bytes(policy=email.policy.SMTP)


def raw_submit(relay: Relay, key: str, raw: bytes, recipients: list[str]) -> tuple[int, str]:
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = client.mail("app@sender.test")
        assert code == 250, reply
        for recipient in recipients:
            code, reply = client.rcpt(recipient)
            assert code == 250, reply
        code, reply = client.data(raw)
    return code, reply.decode()


def arrived(sink: SmtpSink, marker: str, count: int = 1, timeout: float = 30) -> list[ReceivedMessage]:
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in sink.messages if marker.encode() in m.data]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} messages with {marker} arrived"
        time.sleep(0.1)


def parsed(received: ReceivedMessage) -> EmailMessage:
    message = email.message_from_bytes(received.data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


HOSTILE_HEADERS = [
    ("Subject", word("Invoice\x0bX-Evil: 1"), "subject"),
    ("Subject", word("Invoice\r\nBcc: stolen@evil.test"), "subject"),
    ("Subject", word("Invoice\x1cnext"), "subject"),
    ("Subject", "raw\x0bvertical tab", "subject"),
    ("X-Campaign", word("autumn\x1e"), "headers.X-Campaign"),
    ("X-Campaign", "raw\x0cform feed", "headers.X-Campaign"),
    ("From", word("Eve\x1d") + " <news@sender.test>", "from_name"),
    ("From", word("Eve\r\nBcc: stolen@evil.test") + " <news@sender.test>", "from"),
    ("Reply-To", word("Help\r\n") + " <help@sender.test>", "reply_to"),
]


@pytest.mark.parametrize(
    ("header", "value", "field"), HOSTILE_HEADERS, ids=[f"{h}-{i}" for i, (h, _, _) in enumerate(HOSTILE_HEADERS)]
)
def test_a_header_that_decodes_to_a_control_character_gets_a_permanent_554_naming_the_field(
    relay: Relay, key: str, sink: SmtpSink, header: str, value: str, field: str
) -> None:
    headers = {"From": "news@sender.test", "To": "reader@example.test", "Subject": "hostile-smtp", header: value}
    raw = "".join(f"{name}: {text}\r\n" for name, text in headers.items()) + "\r\nbody\r\n"
    code, reply = raw_submit(relay, key, raw.encode("utf-8"), ["reader@example.test"])
    assert code == 554, reply  # permanent: a 451 would have the client retry for days
    assert reply.startswith("5.6.0 Validation failed.") and f"{field}:" in reply, reply
    assert not any(b"hostile-smtp" in m.data for m in sink.messages)


@pytest.mark.parametrize("to", ["undisclosed-recipients:;", None], ids=["undisclosed", "no-to-header"])
def test_bcc_only_mail_to_several_recipients_is_delivered_without_revealing_them(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain, to: str | None
) -> None:
    marker = f"bcc-only-{'undisclosed' if to else 'none'}"
    message = EmailMessage()
    message["From"] = "News <news@sender.test>"
    if to:
        message["To"] = to
    message["Subject"] = marker
    message.set_content("Sent to a hidden list.\n")
    recipients = ["one@example.test", "two@example.test", "three@example.test"]
    with relay.starttls() as client:
        client.login("lettr", key)
        code, reply = submit(client, message, recipients)
    assert code == 250, reply
    assert "accepted 3, rejected 0" in reply
    delivered = arrived(sink, marker, count=3)
    assert sorted(r for m in delivered for r in m.rcpt_tos) == sorted(recipients)
    for received in delivered:
        headers = parsed(received)
        assert headers["To"] == "undisclosed-recipients:;"
        assert headers["Bcc"] is None and headers["Cc"] is None
        header_block = received.data.split(b"\r\n\r\n", 1)[0]
        assert not any(r.encode() in header_block for r in recipients), header_block
        assert dkim_verifies(received, sending_domain)


@swaks
def test_swaks_bcc_only_mail_is_delivered(relay: Relay, key: str, sink: SmtpSink) -> None:
    headers = ("Subject: swaks-bcc-only", "To: undisclosed-recipients:;")
    result = run_swaks(relay, key, "s1@example.test,s2@example.test", "--tls", port=relay.submission, headers=headers)
    assert result.returncode == 0, result.stdout + result.stderr
    delivered = arrived(sink, "swaks-bcc-only", count=2)
    assert all(parsed(m)["To"] == "undisclosed-recipients:;" for m in delivered)


def test_a_long_folded_header_arrives_folded_within_998_and_an_unfoldable_one_is_refused(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    value = " ".join(f"item{n}" for n in range(125))  # 889 characters with spaces
    message = compose("folded@example.test", subject="long-folded-header", X_Items=value)
    code, reply = raw_submit(relay, key, wire(message), ["folded@example.test"])
    assert code == 250, reply
    # 995 characters without a space (sent as encoded words): on one line with its name, over 998.
    unbroken = wire(compose("folded@example.test", subject="unfoldable", X_Blob="b" * 995))
    code, reply = raw_submit(relay, key, unbroken, ["folded@example.test"])
    assert code == 554 and "headers.X-Blob:" in reply, reply
    name = "X-" + "n" * 90
    raw = f"From: news@sender.test\r\nTo: folded@example.test\r\nSubject: s\r\n{name}: v\r\n\r\nbody\r\n"
    code, reply = raw_submit(relay, key, raw.encode(), ["folded@example.test"])
    assert code == 554 and f"headers.{name}:" in reply, reply
    [received] = arrived(sink, "long-folded-header")
    assert max(len(line) for line in received.data.split(b"\r\n")) <= 998
    assert parsed(received)["X-Items"] == value
    assert dkim_verifies(received, sending_domain)


def test_text_parts_are_7bit_or_quoted_printable_and_a_text_attachment_keeps_its_charset(
    relay: Relay, key: str, sink: SmtpSink, sending_domain: SendingDomain
) -> None:
    message = EmailMessage()
    message["From"] = "news@sender.test"
    message["To"] = "mime@example.test"
    message["Subject"] = "mime-encodings"
    message.set_content("Plain ASCII in short lines.\n")
    message.add_alternative("<p>Grüße aus Köln — " + "lang " * 30 + "</p>\n", subtype="html")
    message.add_attachment("Café crème\n".encode("iso-8859-1"), maintype="text", subtype="plain", filename="menu.txt")
    attachment = list(message.iter_attachments())[0]
    attachment.set_param("charset", "iso-8859-1")
    code, reply = raw_submit(relay, key, wire(message), ["mime@example.test"])
    assert code == 250, reply
    [received] = arrived(sink, "mime-encodings")
    assert dkim_verifies(received, sending_domain)
    delivered = parsed(received)
    plain, html = delivered.get_body(("plain",)), delivered.get_body(("html",))
    assert plain is not None and plain["Content-Transfer-Encoding"] == "7bit"
    assert b"Plain ASCII in short lines." in received.data  # readable on the wire, not base64
    assert html is not None and html["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Grüße aus Köln" in html.get_content()
    [delivered_attachment] = list(delivered.iter_attachments())
    assert delivered_attachment.get_content_charset() == "iso-8859-1"
    assert delivered_attachment.get_content() == "Café crème\n"
