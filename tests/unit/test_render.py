"""The rendered message: what a mail client reads back from it, and the wire rules it must keep."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

from postroom.delivery.render import render
from postroom.messages.request import Attachment, SendRequest

LONG_NAME = "Übersicht der Bestellungen für das Geschäftsjahr — " * 4 + "注文.pdf"  # 210 characters
CREATED = datetime(2026, 11, 23, 9, 30, 15, tzinfo=UTC)


def _parsed(request: SendRequest) -> tuple[bytes, EmailMessage]:
    raw = render(request, message_id_header="<123.abc@mail.example.test>", created_at=CREATED)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return raw, message


def _assert_wire_rules(raw: bytes, longest: int = 78) -> None:
    assert b"\n" not in raw.replace(b"\r\n", b""), "every line ends in CRLF"
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert b"\x00" not in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= longest
    raw.decode("ascii")


def test_a_plain_text_message() -> None:
    raw, message = _parsed(SendRequest(from_email="a@sender.test", to=("b@example.test",), subject="Hi", text="Hello"))
    _assert_wire_rules(raw)
    assert message["From"] == "a@sender.test" and message["To"] == "b@example.test"
    assert message["Subject"] == "Hi"
    assert message["Message-ID"] == "<123.abc@mail.example.test>"
    assert message["Date"].datetime == CREATED
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Hello"
    assert raw.startswith(b"From: ")


def test_text_and_html_are_alternatives_in_order_and_bcc_is_not_listed() -> None:
    request = SendRequest(
        from_email="orders@sender.test",
        from_name="Shop, Inc.",
        to=tuple(f"r{i}@example.test" for i in range(50)),
        cc=("c@example.test",),
        bcc=("hidden@example.test",),
        reply_to="help@sender.test",
        reply_to_name="Help Desk",
        subject="Your order",
        text="Plain body\nsecond line " + "x" * 200,
        html="<p>HTML body</p>",
    )
    raw, message = _parsed(request)
    _assert_wire_rules(raw)
    assert message["From"].addresses[0].display_name == "Shop, Inc."
    assert [a.addr_spec for a in message["To"].addresses] == list(request.to)
    assert message["Cc"] == "c@example.test"
    assert b"hidden@example.test" not in raw
    assert message["Reply-To"].addresses[0].display_name == "Help Desk"
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == (request.text or "").replace("\n", "\r\n")  # text travels with CRLF ends
    assert parts[1].get_content() == "<p>HTML body</p>"


def test_non_ascii_headers_and_bodies_round_trip() -> None:
    subject = "Ihre Bestellung über 50 € ist unterwegs — 注文は発送されました " * 2
    request = SendRequest(
        from_email="a@sender.test",
        from_name="Zoë Café",
        to=("b@example.test",),
        subject=subject,
        html="<p>Grüße, 你好</p>",
        headers={"X-Campaign": "Rentrée été"},
    )
    raw, message = _parsed(request)
    _assert_wire_rules(raw)
    assert message["Subject"] == subject
    assert message["From"].addresses[0].display_name == "Zoë Café"
    assert message["X-Campaign"] == "Rentrée été"
    assert message.get_content() == "<p>Grüße, 你好</p>"


def test_attachments_go_in_a_mixed_message_with_their_names_and_bytes() -> None:
    pdf = bytes(range(256)) * 40
    request = SendRequest(
        from_email="a@sender.test",
        to=("b@example.test",),
        subject="Invoice",
        text="See attached.",
        html="<p>See attached.</p>",
        attachments=(
            Attachment(name="invoice 2026.pdf", type="application/pdf", data=base64.b64encode(pdf).decode()),
            Attachment(name="résumé.txt", type="text/plain", data=base64.b64encode(b"hello").decode()),
            Attachment(name=LONG_NAME, type="text/plain", data=base64.b64encode(b"long").decode()),
        ),
    )
    raw, message = _parsed(request)
    _assert_wire_rules(raw)
    assert message.get_content_type() == "multipart/mixed"
    body, first, second, third = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert first.get_content_type() == "application/pdf" and first.get_filename() == "invoice 2026.pdf"
    assert first.get_content() == pdf
    assert second.get_filename() == "résumé.txt" and second.get_payload(decode=True) == b"hello"
    assert third.get_filename() == LONG_NAME and third.get_payload(decode=True) == b"long"
    assert [a.get_filename() for a in message.iter_attachments()] == ["invoice 2026.pdf", "résumé.txt", LONG_NAME]


def test_a_caller_header_longer_than_a_line_is_kept_whole() -> None:
    unsubscribe = "<https://sender.test/unsubscribe/" + "a" * 150 + ">"
    request = SendRequest(
        from_email="a@sender.test", to=("b@example.test",), text="x", headers={"List-Unsubscribe": unsubscribe}
    )
    raw, message = _parsed(request)
    _assert_wire_rules(raw, longest=998)
    assert message["List-Unsubscribe"] == unsubscribe


def test_ascii_text_in_short_lines_is_7bit_and_anything_else_quoted_printable() -> None:
    request = SendRequest(
        from_email="a@sender.test",
        to=("b@example.test",),
        subject="s",
        text="Hello\nsecond line",
        html="<p>" + "long line " * 20 + "</p>",
        amp_html="<p>Grüße</p>",
    )
    raw, message = _parsed(request)
    _assert_wire_rules(raw)
    assert b"base64" not in raw
    text, amp, html = message.iter_parts()
    assert text["Content-Transfer-Encoding"] == "7bit"
    assert b"Hello\r\nsecond line" in raw  # readable as it is
    assert amp["Content-Transfer-Encoding"] == "quoted-printable"
    assert html["Content-Transfer-Encoding"] == "quoted-printable"  # a line over 78 characters
    assert amp.get_content() == "<p>Grüße</p>"
    assert html.get_content() == request.html
    assert text.get_content() == "Hello\r\nsecond line"


def test_a_long_subject_and_custom_header_are_folded_within_the_line_limits() -> None:
    subject = "word " * 190 + "end"  # 953 characters: "Subject: " + it would be over 998 on one line
    value = "v " * 480 + "e"
    request = SendRequest(
        from_email="a@sender.test",
        to=("b@example.test",),
        subject=subject,
        text="x",
        headers={"X-Long": value},
    )
    raw, message = _parsed(request)
    _assert_wire_rules(raw)
    assert message["Subject"] == subject and message["X-Long"] == value


def test_a_subject_without_spaces_too_long_for_a_line_becomes_encoded_words() -> None:
    subject = "a" * 998
    raw, message = _parsed(SendRequest(from_email="a@sender.test", to=("b@example.test",), subject=subject, text="x"))
    _assert_wire_rules(raw)
    assert message["Subject"] == subject


def test_a_send_without_to_says_undisclosed_recipients_and_lists_no_one() -> None:
    request = SendRequest(from_email="a@sender.test", to=(), bcc=("x@example.test", "y@example.test"), text="x")
    raw, message = _parsed(request)
    assert message["To"] == "undisclosed-recipients:;"
    assert b"x@example.test" not in raw and b"y@example.test" not in raw and b"Bcc" not in raw


def test_an_attachment_keeps_its_type_parameters() -> None:
    data = base64.b64encode("Grüße".encode("iso-8859-1")).decode()
    attachment = Attachment(name="n.txt", type="text/plain; charset=iso-8859-1", data=data)
    request = SendRequest(from_email="a@sender.test", to=("b@example.test",), text="x", attachments=(attachment,))
    _, message = _parsed(request)
    part = next(message.iter_attachments())
    assert part.get_content_charset() == "iso-8859-1" and part.get_content() == "Grüße"
