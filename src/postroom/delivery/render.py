"""Turning a stored send into the RFC 5322 message that goes on the wire.

Every header value was checked for CR, LF and NUL when the send was accepted; ``EmailMessage`` would refuse them
again here. The Message-ID and Date come from the stored message, so a retry (or a duplicate after a crash)
carries the same Message-ID.
"""

from __future__ import annotations

import email.policy
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from postroom.emails.validation import SendRequest


def _address(email_address: str, name: str | None) -> Address:
    local, domain = email_address.rsplit("@", 1)
    return Address(display_name=name or "", username=local, domain=domain)


def render(request: SendRequest, *, message_id_header: str, created_at: datetime) -> bytes:
    """The message with CRLF line endings, ready to be DKIM-signed and sent. Bcc recipients are not listed."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = _address(request.from_email, request.from_name)
    message["To"] = [_address(a, None) for a in request.to]
    if request.cc:
        message["Cc"] = [_address(a, None) for a in request.cc]
    if request.reply_to:
        message["Reply-To"] = _address(request.reply_to, request.reply_to_name)
    message["Subject"] = request.subject or ""
    message["Date"] = format_datetime(created_at)
    message["Message-ID"] = message_id_header
    for name, value in request.headers.items():
        message[name] = value

    if request.text is not None:
        message.set_content(request.text)
        if request.amp_html is not None:
            message.add_alternative(request.amp_html, subtype="x-amp-html")
        if request.html is not None:
            message.add_alternative(request.html, subtype="html")
    elif request.amp_html is not None and request.html is not None:
        message.set_content(request.amp_html, subtype="x-amp-html")
        message.add_alternative(request.html, subtype="html")
    else:
        message.set_content(request.html or request.amp_html or "", subtype="html")
    for attachment in request.attachments:
        maintype, subtype = attachment.type.split("/", 1)
        message.add_attachment(attachment.decoded(), maintype=maintype, subtype=subtype, filename=attachment.name)
    return message.as_bytes()
