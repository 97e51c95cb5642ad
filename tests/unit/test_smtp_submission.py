"""A MIME message submitted over SMTP read into the body of ``POST /api/emails``, and SMTP replies for API outcomes."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest

from postroom.errors import IpNotAllowed, TooManyAuthFailures, UnconfiguredDomain, ValidationFailed
from postroom.messages.request import parse_send_request
from postroom.relay.listener import smtp_reply
from postroom.relay.message import read_submission


def message(**headers: str) -> EmailMessage:
    built = EmailMessage()
    for name, value in headers.items():
        built[name.replace("_", "-")] = value
    built.set_content("Plain text\n")
    return built


def test_headers_bodies_and_envelope_recipients_become_the_send() -> None:
    built = message(
        From="=?utf-8?q?Caf=C3=A9_News?= <news@sender.test>",
        To="Alice <alice@example.test>, absent@example.test",
        Cc="carol@example.test",
        Reply_To="Help <help@sender.test>",
        Subject="=?utf-8?q?Your_order_=E2=9C=93?=",
        X_Campaign="autumn",
        Idempotency_Key="order-7",
        Date="Mon, 23 Nov 2026 10:00:00 +0000",
        Message_ID="<client@app.test>",
        Received="from app.test by relay",
    )
    built.add_alternative("<p>HTML</p>\n", subtype="html")
    built.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream", filename="C:\\tmp\\data.bin")
    submission = read_submission(
        built.as_bytes(),
        mail_from="bounce@app.test",
        envelope_recipients=["alice@example.test", "carol@example.test", "bob@example.test"],
    )
    assert submission.idempotency_key == "order-7"
    body = submission.body
    assert body["from"] == "news@sender.test" and body["from_name"] == "Café News"
    assert body["reply_to"] == "help@sender.test" and body["reply_to_name"] == "Help"
    assert body["subject"] == "Your order ✓"
    assert (body["to"], body["cc"], body["bcc"]) == (
        ["alice@example.test"],
        ["carol@example.test"],
        ["bob@example.test"],
    )
    assert body["text"] == "Plain text\n" and body["html"] == "<p>HTML</p>\n"
    assert body["attachments"] == [
        {"name": "data.bin", "type": "application/octet-stream", "data": base64.b64encode(b"\x00\x01").decode()}
    ]
    assert body["headers"] == {"X-Campaign": "autumn"}  # Date, Message-ID, Received, MIME-Version, Content-* dropped
    request = parse_send_request(body)
    assert [kind for _, kind in request.recipients()] == ["to", "cc", "bcc"]


def test_a_plain_message_without_from_uses_the_envelope_sender() -> None:
    raw = b"To: a@example.test\r\nSubject: s\r\n\r\nhello\r\n"
    body = read_submission(raw, mail_from="app@sender.test", envelope_recipients=["a@example.test"]).body
    assert body == {"from": "app@sender.test", "to": ["a@example.test"], "subject": "s", "text": "hello\r\n"}


def test_a_single_recipient_named_nowhere_is_the_to_recipient() -> None:
    raw = message(From="n@sender.test", To="undisclosed-recipients:;", Subject="s").as_bytes()
    body = read_submission(raw, mail_from="", envelope_recipients=["hidden@example.test"]).body
    assert body["to"] == ["hidden@example.test"] and "bcc" not in body


@pytest.mark.parametrize("to", ["undisclosed-recipients:;", None], ids=["undisclosed", "no To header"])
def test_several_recipients_none_in_to_are_all_bcc(to: str | None) -> None:
    headers = {"From": "n@sender.test", "Subject": "s", **({"To": to} if to else {})}
    raw = message(**headers).as_bytes()
    body = read_submission(raw, mail_from="", envelope_recipients=["a@example.test", "b@example.test"]).body
    assert "to" not in body and body["bcc"] == ["a@example.test", "b@example.test"]
    request = parse_send_request(body, undisclosed_to=True)
    assert request.to == () and request.bcc == ("a@example.test", "b@example.test")
    with pytest.raises(ValidationFailed) as excinfo:  # the API itself still requires to
        parse_send_request(body)
    assert "to" in excinfo.value.errors


def test_two_from_addresses_are_refused() -> None:
    raw = message(From="a@sender.test, b@sender.test", To="x@example.test", Subject="s").as_bytes()
    with pytest.raises(ValidationFailed) as excinfo:
        read_submission(raw, mail_from="", envelope_recipients=["x@example.test"])
    assert list(excinfo.value.errors) == ["from"]


def test_an_attachment_without_a_name_gets_one() -> None:
    built = message(From="n@sender.test", To="x@example.test", Subject="s")
    built.add_attachment(b"png", maintype="image", subtype="png")
    body = read_submission(built.as_bytes(), mail_from="", envelope_recipients=["x@example.test"]).body
    assert body["attachments"][0]["name"] == "attachment-1.png"


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (IpNotAllowed(), "550 5.7.1 Access denied. Your IP address is not allowed."),
        (UnconfiguredDomain(), "550 5.7.1 The sender domain is not configured or approved for sending."),
        (ValidationFailed({"subject": ["Required.\r\nInjected: x"]}), "554 5.6.0 Validation failed. subject: Required. Injected: x"),
        (ValidationFailed({"headers.X-Ü": ["Bad."]}), "554 5.6.0 Validation failed. headers.X-?: Bad."),
    ],
)  # fmt: skip
def test_smtp_replies_carry_the_api_message_on_one_ascii_line(error: Exception, reply: str) -> None:
    assert isinstance(error, IpNotAllowed | UnconfiguredDomain | ValidationFailed)
    assert smtp_reply(error.status, error.body()) == reply


def test_a_lockout_is_temporary() -> None:
    error = TooManyAuthFailures(60)
    assert smtp_reply(error.status, error.body(), during_auth=True).startswith("454 4.7.0 Too many failed")
    assert smtp_reply(error.status, error.body()).startswith("451 4.7.0 ")


def test_an_accepted_send_is_queued() -> None:
    body = {"message": "Email queued for delivery.", "data": {"request_id": "123", "accepted": 2, "rejected": 1}}
    assert smtp_reply(200, body) == "250 2.0.0 Queued as 123 (accepted 2, rejected 1)"


def _word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize(
    ("header", "field"),
    [("Subject", "subject"), ("X-Campaign", "headers.X-Campaign")],
)
@pytest.mark.parametrize("control", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\r\nBcc: x@evil.test"])
def test_an_encoded_word_that_decodes_to_a_control_character_is_refused(header: str, field: str, control: str) -> None:
    """The control character at the end: it must not be trimmed away as if it were whitespace."""
    raw = (
        f"From: n@sender.test\r\nTo: x@example.test\r\n{header}: {_word('a' + control)}\r\n"
        + ("" if header == "Subject" else "Subject: s\r\n")
        + "\r\nhello\r\n"
    ).encode()
    body = read_submission(raw, mail_from="", envelope_recipients=["x@example.test"]).body
    with pytest.raises(ValidationFailed) as excinfo:
        parse_send_request(body)
    assert field in excinfo.value.errors, excinfo.value.errors


@pytest.mark.parametrize("control", ["\x0b", "\x1e"])
def test_a_display_name_that_decodes_to_a_control_character_is_refused(control: str) -> None:
    raw = f"From: {_word('Eve' + control)} <n@sender.test>\r\nTo: x@example.test\r\nSubject: s\r\n\r\nhi\r\n".encode()
    body = read_submission(raw, mail_from="", envelope_recipients=["x@example.test"]).body
    with pytest.raises(ValidationFailed) as excinfo:
        parse_send_request(body)
    assert "from_name" in excinfo.value.errors


@pytest.mark.parametrize(("header", "field"), [("From", "from"), ("Reply-To", "reply_to"), ("To", "to"), ("Cc", "cc")])
def test_an_address_header_whose_encoded_word_decodes_to_cr_lf_is_a_validation_error(header: str, field: str) -> None:
    evil = _word("Eve\r\nBcc: x@evil.test") + " <n@sender.test>"
    headers = {"From": "n@sender.test", "To": "x@example.test", header: evil}
    raw = ("".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "Subject: s\r\n\r\nhi\r\n").encode()
    with pytest.raises(ValidationFailed) as excinfo:  # a 554 over SMTP, not a 451
        read_submission(raw, mail_from="", envelope_recipients=["x@example.test"])
    assert field in excinfo.value.errors


def test_an_attachment_keeps_its_content_type_parameters() -> None:
    built = message(From="n@sender.test", To="x@example.test", Subject="s")
    built.add_attachment("Grüße\n".encode("iso-8859-1"), maintype="text", subtype="plain", filename="notes.txt")
    part = list(built.iter_attachments())[0]
    part.set_param("charset", "iso-8859-1")
    part.set_param("format", "flowed")
    part.set_param("name", "Grüße.txt")
    attachment = read_submission(built.as_bytes(), mail_from="", envelope_recipients=["x@example.test"]).body[
        "attachments"
    ][0]
    assert attachment["type"] == "text/plain; charset=iso-8859-1; format=flowed; name*=utf-8''Gr%C3%BC%C3%9Fe.txt"
    assert (
        parse_send_request(
            {
                "from": "n@sender.test",
                "to": ["x@example.test"],
                "subject": "s",
                "text": "x",
                "attachments": [attachment],
            }
        )
        .attachments[0]
        .type
        == attachment["type"]
    )
