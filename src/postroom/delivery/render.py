"""Turning a stored send into the RFC 5322 message that goes on the wire.

Every header value was checked for CR, LF and NUL when the send was accepted. The Message-ID and Date come from
the stored message, so a retry (or a duplicate after a crash) carries the same Message-ID.

This builds on the ``compat32`` message classes: the modern ``EmailMessage`` API parses and refolds every header
through ``email.headerregistry`` (over a millisecond a message, more than DKIM signing); here non-ASCII values are
encoded once as RFC 2047 words and the generator only folds long lines.
"""

from __future__ import annotations

import email.policy
import secrets
from datetime import datetime
from email import encoders
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from io import BytesIO
from typing import cast

from postroom.emails.validation import SendRequest

# Header lines are not folded: every value is at most 998 characters (RFC 5322's hard limit), non-ASCII values
# are RFC 2047 words that fold themselves, and refolding every header cost a fifth of rendering.
_POLICY = email.policy.compat32.clone(linesep="\r\n", max_line_length=None)


def _header(value: str) -> str:
    # A Header object is what compat32 messages take for encoded words; typeshed only admits str here.
    return value if value.isascii() else cast(str, Header(value, "utf-8"))


def _address(address: str, name: str | None) -> str:
    return formataddr((name, address)) if name else address


def _boundary() -> str:
    # Random and long enough that no base64 or quoted-printable body can contain it, so the generator does not
    # need to search the parts for a collision (its default boundary does, slowly).
    return f"=_postroom_{secrets.token_hex(16)}"


def _part(part: Message) -> Message:
    del part["MIME-Version"]  # the message says it once, at the top
    return part


def _text(content: str, subtype: str) -> Message:
    return _part(MIMEText(content, subtype, "utf-8"))


def _body(request: SendRequest) -> Message:
    parts = [
        _text(content, subtype)
        for content, subtype in ((request.text, "plain"), (request.amp_html, "x-amp-html"), (request.html, "html"))
        if content is not None
    ]
    if len(parts) == 1:
        return parts[0]
    alternative = _part(MIMEMultipart("alternative", boundary=_boundary()))
    for part in parts:
        alternative.attach(part)
    return alternative


def render(request: SendRequest, *, message_id_header: str, created_at: datetime) -> bytes:
    """The message with CRLF line endings, ready to be DKIM-signed and sent. Bcc recipients are not listed."""
    message = _body(request)
    if request.attachments:
        mixed = MIMEMultipart("mixed", boundary=_boundary())
        mixed.attach(_part(message))
        for attachment in request.attachments:
            maintype, subtype = attachment.type.split("/", 1)
            part = _part(MIMEBase(maintype, subtype))
            part.set_payload(attachment.decoded())
            encoders.encode_base64(part)
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", attachment.name))
            mixed.attach(part)
        message = mixed
    message["From"] = _address(request.from_email, request.from_name)
    message["To"] = ", ".join(request.to)
    if request.cc:
        message["Cc"] = ", ".join(request.cc)
    if request.reply_to:
        message["Reply-To"] = _address(request.reply_to, request.reply_to_name)
    message["Subject"] = _header(request.subject or "")
    message["Date"] = format_datetime(created_at)
    message["Message-ID"] = message_id_header
    del message["MIME-Version"]
    message["MIME-Version"] = "1.0"
    for name, value in request.headers.items():
        message[name] = _header(value)
    out = BytesIO()
    BytesGenerator(out, policy=_POLICY).flatten(message)
    return out.getvalue()
