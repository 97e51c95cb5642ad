"""Reading DSNs (RFC 3464) and ARF reports (RFC 5965), and the VERP addresses they come back to."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from postroom.config import load_settings
from postroom.delivery.classify import classify_reply
from postroom.delivery.return_path import envelope_sender, parse_envelope_recipient
from postroom.relay.reports import ReportKind, parse_report

DATA = Path(__file__).resolve().parents[1] / "data"
VERP = "bounces+42-0123456789abcdef@bounces.postroom.test"
RECIPIENT = "alice@example.test"
MESSAGE_ID = "<5123456789012345678.a1b2c3d4e5f6@postroom.test>"


def sample(name: str, *, crlf: bool = True) -> bytes:
    text = (DATA / name).read_text()
    for placeholder, value in (("__VERP__", VERP), ("__RECIPIENT__", RECIPIENT), ("__MESSAGE_ID__", MESSAGE_ID)):
        text = text.replace(placeholder, value)
    return (text.replace("\n", "\r\n") if crlf else text).encode()


@pytest.mark.parametrize("crlf", [True, False], ids=["crlf", "lf"])
def test_a_postfix_hard_bounce_is_read_field_by_field(crlf: bool) -> None:
    report = parse_report(sample("dsn_hard_bounce.eml", crlf=crlf))
    assert report is not None and report.kind is ReportKind.DELIVERY_STATUS
    assert report.reporting_mta == "mx.example.test"
    assert report.reported_by == "mx.example.test"
    assert report.original_message_id == MESSAGE_ID
    assert report.original_recipients == (RECIPIENT,)
    [block] = report.recipients
    assert block.action == "failed"
    assert block.status == "5.1.1"
    assert block.final_recipient == block.original_recipient == RECIPIENT
    assert block.remote_mta == "store.example.test"
    assert block.diagnostic == (
        f"550 5.1.1 <{RECIPIENT}>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert block.reply_code == 550
    outcome = classify_reply(block.reply_code, block.text)
    assert (outcome.bounce_class, outcome.suppress) == (10, True)


def test_a_delay_warning_with_returned_headers_only() -> None:
    report = parse_report(sample("dsn_delayed.eml"))
    assert report is not None and report.kind is ReportKind.DELIVERY_STATUS
    [block] = report.recipients
    assert (block.action, block.status, block.reply_code) == ("delayed", "4.2.2", 452)
    assert block.final_recipient == RECIPIENT and block.original_recipient is None
    assert report.original_message_id == MESSAGE_ID  # from text/rfc822-headers
    outcome = classify_reply(block.reply_code, block.text)
    assert (outcome.bounce_class, outcome.suppress) == (22, False)


def test_an_arf_abuse_report() -> None:
    report = parse_report(sample("arf_abuse.eml"))
    assert report is not None and report.kind is ReportKind.FEEDBACK
    assert report.recipients == ()
    feedback = report.feedback
    assert feedback is not None
    assert feedback.feedback_type == "abuse"
    assert feedback.user_agent == "SomeGenerator/1.0"
    assert feedback.original_rcpt_to == RECIPIENT
    assert feedback.original_mail_from == VERP
    assert feedback.reported_domain == "sender.test"
    assert feedback.source_ip == "192.0.2.1"
    assert report.reported_by == "fbl.mailbox.test"
    assert report.original_message_id == MESSAGE_ID


def test_a_plain_text_bounce_is_not_a_report() -> None:
    assert parse_report(sample("dsn_without_report.eml")) is None


def _dsn(status_part: str, *, content_type: str = "message/delivery-status", encoding: str | None = None) -> bytes:
    body = base64.b64encode(status_part.encode()).decode() if encoding == "base64" else status_part
    transfer = f"Content-Transfer-Encoding: {encoding}\r\n" if encoding else ""
    return (
        "From: MAILER-DAEMON@mx.example.test\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nundeliverable\r\n"
        f"--b\r\nContent-Type: {content_type}\r\n{transfer}\r\n{body}\r\n--b--\r\n"
    ).encode()


STATUS_BLOCKS = (
    "Reporting-MTA: dns; mx.example.test\r\n\r\n"
    "Final-Recipient: rfc822; first@example.test\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n"
    "Final-Recipient: rfc822; second@example.test\r\nAction: failed\r\nStatus: 5.2.2\r\n"
)


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [("message/delivery-status", None), ("message/delivery-status", "base64"), ("text/plain", None)],
    ids=["well-formed", "base64-encoded", "mislabelled"],
)
def test_sloppy_status_parts_are_still_read(content_type: str, encoding: str | None) -> None:
    report = parse_report(_dsn(STATUS_BLOCKS, content_type=content_type, encoding=encoding))
    assert report is not None
    assert [(b.final_recipient, b.action, b.status) for b in report.recipients] == [
        ("first@example.test", "delivered", "2.0.0"),
        ("second@example.test", "failed", "5.2.2"),
    ]
    assert report.reporting_mta == "mx.example.test"
    [second] = report.blocks_for("SECOND@example.test")
    assert second.reply_code == 550 and second.text == "5.2.2"  # no diagnostic: the status speaks
    assert classify_reply(second.reply_code, second.text).bounce_class == 22


def test_a_dsn_without_a_per_message_block_or_a_returned_message() -> None:
    report = parse_report(_dsn("Final-Recipient: rfc822;x@example.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"))
    assert report is not None
    assert report.reporting_mta is None and report.original_message_id is None
    assert [b.final_recipient for b in report.recipients] == ["x@example.test"]


def test_blocks_for_an_unnamed_address_are_all_blocks() -> None:
    report = parse_report(_dsn(STATUS_BLOCKS))
    assert report is not None
    assert len(report.blocks_for("forwarded@elsewhere.test")) == 2


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not a message at all",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b--\r\n",
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--",
        _dsn("Reporting-MTA: dns; mx.example.test\r\n"),  # no recipient block
    ],
    ids=["empty", "text", "no-parts", "mdn", "no-recipients"],
)
def test_anything_else_is_not_a_report(raw: bytes) -> None:
    assert parse_report(raw) is None


# -- VERP ---------------------------------------------------------------------------------------------------

SETTINGS = load_settings(
    {"POSTROOM_SECRET_KEY": "k" * 32, "POSTROOM_MAIL_HOSTNAME": "mail.postroom.test", "POSTROOM_DATA_DIR": "/nowhere"}
)


def test_verp_addresses_round_trip_and_stay_short() -> None:
    sender = envelope_sender(SETTINGS, 1234567)
    local, domain = sender.split("@")
    assert domain == "mail.postroom.test" and local.startswith("bounces+1234567-")
    assert len(local) <= 64
    assert parse_envelope_recipient(SETTINGS, sender) == 1234567
    assert parse_envelope_recipient(SETTINGS, f"<{sender.upper()}>") == 1234567


def test_verp_uses_the_return_path_host_when_one_is_set() -> None:
    settings = dataclasses.replace(SETTINGS, return_path_host="bounces.example.net")
    sender = envelope_sender(settings, 7)
    assert sender.endswith("@bounces.example.net")
    assert parse_envelope_recipient(settings, sender) == 7
    assert parse_envelope_recipient(SETTINGS, sender) is None  # another host is not ours


def test_a_verp_address_with_a_wrong_token_or_secret_is_not_ours() -> None:
    sender = envelope_sender(SETTINGS, 99)
    local, domain = sender.split("@")
    other_id = local.replace("+99-", "+98-")
    flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
    for address in (f"{other_id}@{domain}", f"{flipped}@{domain}", f"bounces@{domain}", f"alice@{domain}"):
        assert parse_envelope_recipient(SETTINGS, address) is None, address
    other_secret = dataclasses.replace(SETTINGS, secret_key="z" * 32)
    assert parse_envelope_recipient(other_secret, envelope_sender(other_secret, 99)) == 99
    assert parse_envelope_recipient(SETTINGS, envelope_sender(other_secret, 99)) is None
