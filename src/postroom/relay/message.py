"""A MIME message submitted over SMTP, read into the JSON body of a ``POST /api/emails`` request.

The body then goes through the API's own validation, so SMTP and HTTP senders meet the same rules and the same
error messages. What is read:

- ``from``/``from_name`` from the ``From`` header (the envelope sender when there is none), ``reply_to`` and
  ``reply_to_name`` from ``Reply-To``, ``subject`` from ``Subject``. Values are taken after RFC 2047 words are
  decoded, so a word that decodes to a line break or control character is refused (554) like the same character
  sent raw; an address header the parser refuses for that reason is refused too;
- the recipients are the **envelope** recipients: those the ``To`` header names are ``to``, those ``Cc`` names
  are ``cc``, every other one is ``bcc`` (Bcc never appears in headers). A message whose only recipient is
  named in neither header treats it as ``to``. A message to several recipients none of which ``To`` names
  (``To: undisclosed-recipients:;``, or no ``To`` at all, as Bcc-only mail is sent) is delivered with
  ``To: undisclosed-recipients:;``, as Postfix does, and its recipients stay undisclosed;
- ``text``, ``html`` and ``amp_html`` from the first ``text/plain``, ``text/html`` and ``text/x-amp-html``
  body parts; every other leaf part is an attachment (named by its filename, or ``attachment-N``) whose type
  keeps its parameters (``charset`` …);
- every other header is a custom header, except trace and transport headers and those Postroom sets itself
  (``Date``, ``Message-ID``, ``MIME-Version``, ``Content-*``, ``DKIM-Signature`` …), which are dropped;
- ``Idempotency-Key`` is taken out and applied as on the API.
"""

from __future__ import annotations

import base64
import email
import email.policy
import mimetypes
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import encode_rfc2231
from typing import Any

from postroom.emails.idempotency import HEADER as IDEMPOTENCY_HEADER
from postroom.errors import ValidationFailed
from postroom.messages.request import MIME_ATTRIBUTE, MIME_QUOTABLE

_DROPPED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "reply-to", "date", "message-id", "mime-version", "sender",
        "return-path", "received", "received-spf", "dkim-signature", "domainkey-signature", "authentication-results",
        "delivered-to", "x-original-to", "envelope-to", "resent-from", "resent-to", "resent-date",
        "resent-message-id", "resent-cc", "resent-bcc", "resent-sender", "x-msys-api",
    }
)  # fmt: skip
_DROPPED_PREFIXES = ("content-", "arc-")
_BODY_TYPES = {"text/plain": "text", "text/html": "html", "text/x-amp-html": "amp_html"}


@dataclass(frozen=True, slots=True)
class Submission:
    """The API body built from a message, and the ``Idempotency-Key`` it carried."""

    body: dict[str, Any]
    idempotency_key: str | None


def _addresses(message: EmailMessage, name: str, field: str) -> list[Address]:
    """The addresses of header ``name`` (all occurrences); a header the parser cannot read counts as empty, but
    one it refuses because a decoded part holds CR or LF is a 422 naming ``field``."""
    found: list[Address] = []
    try:
        values = message.get_all(name) or []
    except ValueError:
        raise ValidationFailed(
            {field: [f"The {name} header must not contain line breaks or control characters, encoded or not."]}
        ) from None
    for value in values:
        try:
            found.extend(getattr(value, "addresses", ()))
        except (ValueError, IndexError, TypeError):
            continue
    return found


def _single_address(message: EmailMessage, name: str, field: str) -> Address | None:
    addresses = _addresses(message, name, field)
    if not addresses:
        return None
    if len(addresses) > 1:
        raise ValidationFailed({field: [f"The {name} header must name exactly one address."]})
    return addresses[0]


def _header_text(value: Any) -> str:
    """A header's decoded value: the parser has unfolded it (removed the CRLF of each fold); a CR or LF still in
    it came from an encoded word and is left for validation to refuse."""
    return str(value).strip(" \t")  # str.strip() would also drop controls such as VT and RS at either end


def _parameter(name: str, value: str) -> str:
    """One ``; name=value`` MIME parameter: a token as it is, else quoted, else in RFC 2231 form."""
    if MIME_ATTRIBUTE.fullmatch(value):
        return f"; {name}={value}"
    if MIME_QUOTABLE.fullmatch(value):
        return f'; {name}="{value}"'
    return f"; {name}*={encode_rfc2231(value, 'utf-8')}"


def _content_type(part: Message) -> str:
    """The part's type with its parameters (``charset`` and the rest), written out again from their decoded
    values so that they reach the delivered message in a form it can carry."""
    header = part.get("Content-Type")
    params = getattr(header, "params", None) or {}
    return part.get_content_type() + "".join(
        _parameter(k, str(v)) for k, v in params.items() if MIME_ATTRIBUTE.fullmatch(k)
    )


def _decoded_text(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError) as exc:
        raise ValidationFailed({"body": [f"A {part.get_content_type()} part could not be decoded: {exc}."]}) from None
    return str(content)


def _attachment(part: Message, number: int) -> dict[str, str]:
    content_type = part.get_content_type()
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):  # message/rfc822 and the like: their payload is a parsed message
        inner = part.get_payload()
        payload = inner[0].as_bytes() if isinstance(inner, list) and inner and isinstance(inner[0], Message) else b""
    name = part.get_filename()
    if name:
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not name:
        name = f"attachment-{number}{mimetypes.guess_extension(content_type) or ''}"
    return {"name": name, "type": _content_type(part), "data": base64.b64encode(payload).decode()}


def _recipients(message: EmailMessage, envelope_recipients: list[str]) -> dict[str, list[str]]:
    to_header = {a.addr_spec.lower() for a in _addresses(message, "To", "to")}
    cc_header = {a.addr_spec.lower() for a in _addresses(message, "Cc", "cc")}
    to = [r for r in envelope_recipients if r.lower() in to_header]
    cc = [r for r in envelope_recipients if r.lower() in cc_header and r.lower() not in to_header]
    bcc = [r for r in envelope_recipients if r.lower() not in to_header and r.lower() not in cc_header]
    if not to and len(envelope_recipients) == 1:
        return {"to": list(envelope_recipients)}
    recipients: dict[str, list[str]] = {"to": to} if to else {}
    if cc:
        recipients["cc"] = cc
    if bcc:
        recipients["bcc"] = bcc
    return recipients


def read_submission(raw: bytes, *, mail_from: str, envelope_recipients: list[str]) -> Submission:
    """The ``POST /api/emails`` body for a message received over SMTP; ``ValidationFailed`` if unusable."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    body: dict[str, Any] = {}

    sender = _single_address(message, "From", "from")
    if sender is not None:
        body["from"] = sender.addr_spec
        if sender.display_name:
            body["from_name"] = sender.display_name
    else:
        body["from"] = mail_from
    reply_to = _single_address(message, "Reply-To", "reply_to")
    if reply_to is not None:
        body["reply_to"] = reply_to.addr_spec
        if reply_to.display_name:
            body["reply_to_name"] = reply_to.display_name
    body.update(_recipients(message, envelope_recipients))
    if message["Subject"] is not None:
        body["subject"] = _header_text(message["Subject"])

    bodies: list[Message] = []
    for content_type, field in _BODY_TYPES.items():
        part = message.get_body(preferencelist=(content_type.split("/", 1)[1],))
        if content_type == "text/x-amp-html":  # get_body knows only plain and html
            part = next((p for p in message.walk() if p.get_content_type() == content_type), None)
        if part is not None and part.get_content_type() == content_type:
            body[field] = _decoded_text(part)
            bodies.append(part)
    attachments = [
        _attachment(part, number)
        for number, part in enumerate(
            (p for p in message.walk() if not p.is_multipart() and all(p is not b for b in bodies)), start=1
        )
    ]
    if attachments:
        body["attachments"] = attachments

    headers: dict[str, str] = {}
    idempotency_key: str | None = None
    for name, value in message.items():
        lowered = name.lower()
        if lowered == IDEMPOTENCY_HEADER.lower():
            idempotency_key = _header_text(value)
        elif lowered not in _DROPPED_HEADERS and not lowered.startswith(_DROPPED_PREFIXES):
            headers[name] = _header_text(value)
    if headers:
        body["headers"] = headers
    return Submission(body=body, idempotency_key=idempotency_key)
