"""Reading delivery status notifications (RFC 3464) and feedback reports (ARF, RFC 5965) with the stdlib.

Both are ``multipart/report`` messages: a human-readable part, a machine-readable part (``message/delivery-status``
or ``message/feedback-report``: blocks of header-style fields) and, optionally, the returned message or its headers
(``message/rfc822`` or ``text/rfc822-headers``). Only the machine-readable fields are believed; the prose varies
by mail server and language. Mail servers get these formats wrong in small ways (a base64-encoded status part,
``text/plain`` instead of ``message/delivery-status``, lower-case field names), so parsing is tolerant: anything
unreadable makes ``parse_report`` return None rather than raise, and the message is then ignored.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from enum import StrEnum
from typing import Any

_STATUS = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})")
_REPLY_CODE = re.compile(r"^\s*([245]\d\d)(?=[\s-]|$)")


class ReportKind(StrEnum):
    DELIVERY_STATUS = "delivery-status"
    FEEDBACK = "feedback-report"


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient block of a DSN."""

    action: str
    """``failed``, ``delayed``, ``delivered``, ``relayed`` or ``expanded`` (lower-case)."""
    status: str | None
    """The RFC 3463 status code, e.g. ``5.1.1``."""
    final_recipient: str | None
    original_recipient: str | None
    diagnostic: str | None
    """The ``Diagnostic-Code`` text without its type (``550 5.1.1 <x@y>: user unknown``)."""
    remote_mta: str | None

    @property
    def reply_code(self) -> int:
        """The SMTP reply code of the diagnostic, or one implied by the status class (5 → 550, 4 → 450)."""
        found = _REPLY_CODE.match(self.diagnostic or "")
        if found:
            return int(found.group(1))
        return 450 if (self.status or "").startswith("4") else 550

    @property
    def text(self) -> str:
        """What to classify and show: the diagnostic, else the status code."""
        return self.diagnostic or (f"{self.status}" if self.status else self.action)

    def names(self, address: str) -> bool:
        """Whether this block is about ``address`` (final or original recipient, case-insensitive)."""
        wanted = address.lower()
        return any(a is not None and a.lower() == wanted for a in (self.final_recipient, self.original_recipient))


@dataclass(frozen=True, slots=True)
class Feedback:
    """The fields of an ARF ``message/feedback-report`` part that Postroom uses."""

    feedback_type: str
    """``abuse``, ``fraud``, ``virus``, ``not-spam``, ``other`` … (lower-case)."""
    user_agent: str | None
    original_rcpt_to: str | None
    original_mail_from: str | None
    reported_domain: str | None
    source_ip: str | None
    arrival_date: str | None


@dataclass(frozen=True, slots=True)
class Report:
    kind: ReportKind
    recipients: tuple[RecipientStatus, ...] = ()
    """DSN only: the per-recipient blocks, in order."""
    feedback: Feedback | None = None
    """ARF only."""
    reporting_mta: str | None = None
    reported_by: str | None = None
    """The domain of the report's ``From`` address (the mailbox provider, for ARF)."""
    original_message_id: str | None = None
    """The ``Message-ID`` of the returned message, with angle brackets, when the report includes its headers."""
    original_recipients: tuple[str, ...] = ()
    """The ``To``/``Cc`` addresses of the returned message (lower-case), a hint when nothing else names one."""

    def blocks_for(self, address: str) -> list[RecipientStatus]:
        """The DSN blocks about ``address``; every block when none names it (forwarding rewrites addresses)."""
        named = [block for block in self.recipients if block.names(address)]
        return named or list(self.recipients)


def _type_and_value(field: str | None) -> str | None:
    """``rfc822; alice@example.test`` → ``alice@example.test`` (address-type fields, RFC 3464 §2.3)."""
    if field is None:
        return None
    _, semicolon, value = field.partition(";")
    value = (value if semicolon else field).strip().strip("<>").strip()
    return value or None


def _field(block: Message, name: str) -> str | None:
    value = block.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a ``message/delivery-status`` or ``message/feedback-report`` part.

    The stdlib parses well-formed ones into a list of Messages; a part it left as text (wrong Content-Type,
    a transfer encoding) is split on blank lines and each block read as headers.
    """
    payload = part.get_payload()
    raw: Any
    if isinstance(payload, list) and all(isinstance(p, Message) for p in payload):
        if (part.get("Content-Transfer-Encoding") or "").strip().lower() != "base64":
            return list(payload)
        # The stdlib read the base64 lines as header-less blocks; their bodies are the encoded text.
        encoded = "".join(str(p.get_payload()) for p in payload if isinstance(p, Message))
        try:
            raw = base64.b64decode("".join(encoded.split()))
        except binascii.Error:
            return []
    else:
        raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return []
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    parser = HeaderParser()
    return [parser.parsestr(block.strip("\n") + "\n") for block in re.split(r"\n[ \t]*\n", text) if block.strip()]


def _addresses(value: str | None) -> list[str]:
    if not value:
        return []
    return [address.lower() for _, address in email.utils.getaddresses([value]) if "@" in address]


def _returned_headers(report: Message) -> Message | None:
    """The headers of the returned message (``message/rfc822`` or ``text/rfc822-headers``), if included."""
    for part in report.walk():
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif content_type == "text/rfc822-headers":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return HeaderParser().parsestr(raw.decode("utf-8", errors="replace"))
    return None


def _domain_of(address_header: str | None) -> str | None:
    for address in _addresses(address_header):
        return address.rsplit("@", 1)[1]
    return None


def _parse(raw: bytes) -> Report | None:
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if message.get_content_type() != "multipart/report":
        return None
    report_type = email.utils.collapse_rfc2231_value(message.get_param("report-type") or "").lower()
    parts = message.get_payload()
    if not isinstance(parts, list):
        return None
    returned = _returned_headers(message)
    reported_by = _domain_of(message.get("From"))
    original_message_id = _message_id(returned)
    original_recipients = (
        tuple(_addresses(returned.get("To")) + _addresses(returned.get("Cc"))) if returned is not None else ()
    )
    if report_type == ReportKind.DELIVERY_STATUS:
        status_part = next(
            (p for p in parts if isinstance(p, Message) and p.get_content_type() == "message/delivery-status"), None
        )
        if status_part is None:  # tolerate a mislabelled second part
            status_part = parts[1] if len(parts) > 1 and isinstance(parts[1], Message) else None
        if status_part is None:
            return None
        blocks = _blocks(status_part)
        if not blocks:
            return None
        per_message, per_recipient = blocks[0], blocks[1:]
        if per_message.get("Final-Recipient") is not None:  # no per-message block at all
            per_message, per_recipient = Message(), blocks
        recipients = tuple(
            RecipientStatus(
                action=(_field(block, "Action") or "").lower(),
                status=_status(_field(block, "Status")),
                final_recipient=_type_and_value(_field(block, "Final-Recipient")),
                original_recipient=_type_and_value(_field(block, "Original-Recipient")),
                diagnostic=_type_and_value(_field(block, "Diagnostic-Code")),
                remote_mta=_type_and_value(_field(block, "Remote-MTA")),
            )
            for block in per_recipient
            if block.get("Action") is not None
        )
        if not recipients:
            return None
        return Report(
            kind=ReportKind.DELIVERY_STATUS,
            recipients=recipients,
            reporting_mta=_type_and_value(_field(per_message, "Reporting-MTA")),
            reported_by=reported_by,
            original_message_id=original_message_id,
            original_recipients=original_recipients,
        )
    if report_type == ReportKind.FEEDBACK:
        feedback_part = next(
            (p for p in parts if isinstance(p, Message) and p.get_content_type() == "message/feedback-report"), None
        )
        if feedback_part is None:
            return None
        blocks = _blocks(feedback_part)
        if not blocks:
            return None
        fields = blocks[0]
        return Report(
            kind=ReportKind.FEEDBACK,
            feedback=Feedback(
                feedback_type=(_field(fields, "Feedback-Type") or "abuse").lower(),
                user_agent=_field(fields, "User-Agent"),
                original_rcpt_to=_type_and_value(_field(fields, "Original-Rcpt-To")),
                original_mail_from=_type_and_value(_field(fields, "Original-Mail-From")),
                reported_domain=_field(fields, "Reported-Domain"),
                source_ip=_field(fields, "Source-IP"),
                arrival_date=_field(fields, "Arrival-Date") or _field(fields, "Received-Date"),
            ),
            reported_by=reported_by,
            original_message_id=original_message_id,
            original_recipients=original_recipients,
        )
    return None


def _status(value: str | None) -> str | None:
    found = _STATUS.search(value or "")
    return found.group(0) if found else None


def _message_id(headers: Message | None) -> str | None:
    if headers is None:
        return None
    value = headers.get("Message-ID")
    if value is None:
        return None
    text = "".join(str(value).split())
    if not text:
        return None
    return text if text.startswith("<") else f"<{text.strip('<>')}>"


def parse_report(raw: bytes) -> Report | None:
    """A DSN or ARF report read from a whole message, or None when it is neither (or unreadable)."""
    try:
        return _parse(raw)
    except (ValueError, LookupError, TypeError, IndexError, AttributeError):
        return None
