"""Reading a send request: every field of a send checked, every problem named in one 422.

Nothing that could reach an SMTP command or a header is accepted with a line break or control character in it
(``postroom.core.headers.unsafe_character`` decides which): Python's own address and header helpers have changed
behaviour across versions, so we refuse rather than rely on them. Custom headers must also fit RFC 5322's
998-character lines once folded. Addresses are ASCII ``local@domain`` only (no display names, comments or quoted
local parts; no SMTPUTF8).

Limits (documented in the README): at most 50 recipients (to + cc + bcc), subject ≤ 998 characters, html, text
and amp_html ≤ 5 MB each, attachments ≤ 10 MB of base64 in total, ≤ 10 custom headers, metadata ≤ 50 keys.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from postroom.core.headers import header_line_problem, unsafe_character, unsafe_message
from postroom.core.ids import MAX_ROW_ID
from postroom.errors import InvalidDomain, ValidationFailed

log = logging.getLogger("postroom.api")

MAX_RECIPIENTS = 50
MAX_SUBJECT = 998
MAX_BODY_PART = 5 * 1024 * 1024
MAX_ATTACHMENTS_TOTAL = 10 * 1024 * 1024
MAX_HEADERS = 10
MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 8 * 1024
SCHEDULE_MIN_AHEAD = timedelta(minutes=5)
SCHEDULE_MAX_AHEAD = timedelta(days=30)

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"({_LOCAL})@((?:{_LABEL}\.)+{_LABEL})")
_LOCAL_PART = re.compile(_LOCAL)
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_TAG = re.compile(r"[A-Za-z0-9_.:-]+")
MIME_ATTRIBUTE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A MIME parameter name, or a value that needs no quotes (RFC 2045's ``token``)."""
MIME_QUOTABLE = re.compile(r"[ !#-\[\]-~]*")
"""A MIME parameter value that can be written in double quotes as it is."""
_MIME_PARAMETER = rf'; ?{MIME_ATTRIBUTE.pattern}=(?:{MIME_ATTRIBUTE.pattern}|"{MIME_QUOTABLE.pattern}")'
_MIME_TYPE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?:{_MIME_PARAMETER})*")
MAX_ATTACHMENT_TYPE = 900
"""Characters of an attachment's type with its parameters (``text/plain; charset=iso-8859-1``)."""
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_PROTECTED_HEADERS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "reply-to", "sender", "return-path",
        "received", "mime-version", "dkim-signature", "x-msys-api",
    }
)  # fmt: skip
# List-Unsubscribe is sent when the caller asks for it in ``headers``, in RFC 2369/8058 form only: one or more
# <https://…> or <mailto:…> URIs, and the one-click Post header with its single allowed value.
_LIST_UNSUBSCRIBE = re.compile(r"<(?:https://|mailto:)[^<>\s]+>(?:\s*,\s*<(?:https://|mailto:)[^<>\s]+>)*")
_ONE_CLICK = "List-Unsubscribe=One-Click"
_KNOWN_FIELDS = frozenset(
    {
        "from", "from_name", "to", "cc", "bcc", "reply_to", "reply_to_name", "subject", "html", "text", "amp_html",
        "template_slug", "template_version", "project_id", "tag", "metadata", "headers", "substitution_data",
        "options", "attachments", "scheduled_at",
    }
)  # fmt: skip
_OPTION_FIELDS = ("click_tracking", "open_tracking", "transactional", "inline_css", "perform_substitutions")


@dataclass(frozen=True, slots=True)
class Attachment:
    name: str
    type: str
    data: str
    """Base64, as sent."""

    def decoded(self) -> bytes:
        return base64.b64decode(self.data)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A validated send: what ``POST /api/emails`` accepted, stored as JSON so the message renders the same later."""

    from_email: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    from_name: str | None = None
    reply_to: str | None = None
    reply_to_name: str | None = None
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    amp_html: str | None = None
    template_slug: str | None = None
    template_version: int | None = None
    project_id: int | None = None
    tag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    substitution_data: dict[str, Any] | None = None
    options: dict[str, bool] = field(default_factory=dict)
    attachments: tuple[Attachment, ...] = ()

    @property
    def sending_domain(self) -> str:
        return self.from_email.rsplit("@", 1)[1].lower()

    @property
    def transactional(self) -> bool:
        return self.options.get("transactional", True)

    def recipients(self) -> list[tuple[str, str]]:
        """(address, "to"|"cc"|"bcc") without duplicates (compared case-insensitively), first occurrence wins."""
        seen: set[str] = set()
        listed: list[tuple[str, str]] = []
        for kind, addresses in (("to", self.to), ("cc", self.cc), ("bcc", self.bcc)):
            for address in addresses:
                if address.lower() not in seen:
                    seen.add(address.lower())
                    listed.append((address, kind))
        return listed

    def to_json(self) -> str:
        return msgspec.json.encode(self).decode()  # msgspec encodes dataclasses natively, nested ones too

    @classmethod
    def from_json(cls, text: str) -> SendRequest:
        data = msgspec.json.decode(text)
        data["attachments"] = tuple(Attachment(**a) for a in data["attachments"])
        for name in ("to", "cc", "bcc"):
            data[name] = tuple(data[name])
        return cls(**data)


class _Errors:
    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field_name: str, message: str) -> None:
        self.errors.setdefault(field_name, []).append(message)


def is_valid_address(address: str) -> bool:
    """One bare ASCII ``local@domain`` address, within RFC 5321's length limits, with an alphabetic TLD."""
    match = _ADDRESS.fullmatch(address)
    if match is None or len(address) > 254 or len(match.group(1)) > 64:
        return False
    return any(c.isalpha() for c in match.group(2).rsplit(".", 1)[1])


def _has_no_sending_domain(value: Any) -> bool:
    """Whether ``value`` is ``local@rest`` with a valid local part but no domain name after the ``@``."""
    if not isinstance(value, str) or unsafe_character(value) or value.count("@") != 1:
        return False
    local, _, rest = value.partition("@")
    return _LOCAL_PART.fullmatch(local) is not None and not is_valid_address(value) and " " not in rest


def _string(body: dict[str, Any], name: str, errors: _Errors, *, maximum: int, single_line: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(name, f"The {name} field must be a string.")
        return None
    if len(value) > maximum:
        errors.add(name, f"The {name} must not be greater than {maximum} characters.")
        return None
    problem = unsafe_message(name, value) if single_line else None
    if problem is not None:
        errors.add(name, problem)
        return None
    if not single_line and "\x00" in value:
        errors.add(name, f"The {name} must not contain NUL characters.")
        return None
    return value


def _address(value: Any, name: str, errors: _Errors) -> str | None:
    if not isinstance(value, str):
        errors.add(name, f"The {name} field must be an email address string.")
        return None
    problem = unsafe_message(name, value)
    if problem is not None:
        errors.add(name, problem)
        return None
    if not is_valid_address(value):
        errors.add(name, f"The {name} must be a valid email address.")
        return None
    return value


def _addresses(body: dict[str, Any], name: str, errors: _Errors) -> tuple[str, ...]:
    value = body.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        errors.add(name, f"The {name} field must be a list of email addresses.")
        return ()
    found = [_address(item, f"{name}.{i}", errors) for i, item in enumerate(value)]
    return tuple(a for a in found if a is not None)


def _string_map(body: dict[str, Any], name: str, errors: _Errors) -> dict[str, str]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        errors.add(name, f"The {name} field must be an object of string values.")
        return {}
    return value


def _parse(body: dict[str, Any], errors: _Errors, *, undisclosed_to: bool = False) -> SendRequest | None:
    no_sending_domain = False
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    for name in unknown:
        errors.add(name, f"The {name} field is not supported.")

    if body.get("from") in (None, ""):
        errors.add("from", "The sender email address is required.")
        from_email = None
    elif _has_no_sending_domain(body["from"]):
        # A well-formed local part at something that is not a domain (``a@localhost``, ``a@[192.0.2.1]``): once
        # every other field is valid, Lettr answers 400 ``invalid_domain`` rather than a validation error.
        from_email = None
        no_sending_domain = True
    else:
        from_email = _address(body["from"], "from", errors)
    to = _addresses(body, "to", errors)
    cc = _addresses(body, "cc", errors)
    bcc = _addresses(body, "bcc", errors)
    if "to" not in errors.errors and not to and not (undisclosed_to and (cc or bcc)):
        errors.add("to", "At least one recipient email address is required.")
    if len(to) + len(cc) + len(bcc) > MAX_RECIPIENTS:
        errors.add("to", f"A message may have at most {MAX_RECIPIENTS} recipients (to, cc and bcc together).")
    reply_to = None if body.get("reply_to") is None else _address(body["reply_to"], "reply_to", errors)

    from_name = _string(body, "from_name", errors, maximum=255)
    reply_to_name = _string(body, "reply_to_name", errors, maximum=255)
    subject = _string(body, "subject", errors, maximum=MAX_SUBJECT)
    html = _string(body, "html", errors, maximum=MAX_BODY_PART, single_line=False)
    text = _string(body, "text", errors, maximum=MAX_BODY_PART, single_line=False)
    amp_html = _string(body, "amp_html", errors, maximum=MAX_BODY_PART, single_line=False)
    template_slug = _string(body, "template_slug", errors, maximum=255)
    tag = _string(body, "tag", errors, maximum=64)
    if tag is not None and not _TAG.fullmatch(tag):
        errors.add("tag", "The tag may contain only letters, digits, '-', '_', '.' and ':'.")

    template_version = body.get("template_version")
    if template_version is not None and (
        not isinstance(template_version, int)
        or isinstance(template_version, bool)
        or not 1 <= template_version <= MAX_ROW_ID
    ):
        errors.add("template_version", "The version parameter must be an integer.")
    project_id = body.get("project_id")
    if project_id is not None and (not isinstance(project_id, int) or isinstance(project_id, bool)):
        errors.add("project_id", "The project_id parameter must be an integer.")
    elif project_id is not None and not 1 <= project_id <= MAX_ROW_ID:
        errors.add("project_id", f"The project_id parameter must be between 1 and {MAX_ROW_ID}.")

    if template_slug is None:
        if not subject:
            errors.add("subject", "The subject field is required when no template_slug is given.")
        if not (html or text or amp_html):
            errors.add("html", "The html or text field is required when no template_slug is given.")

    metadata = _string_map(body, "metadata", errors)
    if len(metadata) > MAX_METADATA_KEYS:
        errors.add("metadata", f"The metadata may have at most {MAX_METADATA_KEYS} keys.")
    elif any(len(k) > 40 or len(v) > 500 for k, v in metadata.items()):
        errors.add("metadata", "Metadata keys may have at most 40 characters and values at most 500.")
    elif len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        errors.add("metadata", "The metadata must not exceed 8 KB.")

    headers = _string_map(body, "headers", errors)
    if len(headers) > MAX_HEADERS:
        errors.add("headers", f"At most {MAX_HEADERS} custom headers are allowed.")
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            errors.add(f"headers.{name}", "The header name must be printable ASCII without spaces or ':'.")
        elif name.lower() in _PROTECTED_HEADERS or name.lower().startswith("content-"):
            errors.add(f"headers.{name}", f"The {name} header is set by Postroom and cannot be overridden.")
        elif (problem := unsafe_message("header value", value)) is not None:
            errors.add(f"headers.{name}", problem)
        elif len(value) > 998:
            errors.add(f"headers.{name}", "The header value must not be greater than 998 characters.")
        elif (problem := header_line_problem(name, value)) is not None:
            errors.add(f"headers.{name}", problem)
        elif name.lower() == "list-unsubscribe" and not _LIST_UNSUBSCRIBE.fullmatch(value.strip()):
            errors.add(f"headers.{name}", "List-Unsubscribe must be one or more <https://…> or <mailto:…> URIs.")
        elif name.lower() == "list-unsubscribe-post" and value.strip() != _ONE_CLICK:
            errors.add(f"headers.{name}", f"List-Unsubscribe-Post must be exactly '{_ONE_CLICK}'.")
    lowered = {n.lower() for n in headers}
    if "list-unsubscribe-post" in lowered and "list-unsubscribe" not in lowered:
        errors.add(
            "headers.List-Unsubscribe-Post", "List-Unsubscribe-Post needs a List-Unsubscribe header with an https URI."
        )

    substitution_data = body.get("substitution_data")
    if substitution_data is not None and not isinstance(substitution_data, dict):
        errors.add("substitution_data", "The substitution_data field must be an object.")

    options: dict[str, bool] = {}
    raw_options = body.get("options")
    if raw_options is not None:
        if not isinstance(raw_options, dict):
            errors.add("options", "The options field must be an object.")
        else:
            for name, value in raw_options.items():
                if name not in _OPTION_FIELDS:
                    errors.add(f"options.{name}", f"The option {name} is not supported.")
                elif not isinstance(value, bool):
                    errors.add(f"options.{name}", f"The option {name} must be true or false.")
                else:
                    options[name] = value

    attachments = _attachments(body.get("attachments"), errors)
    if not errors.errors and no_sending_domain:
        raise InvalidDomain()
    if errors.errors or from_email is None:
        return None
    return SendRequest(
        from_email=from_email,
        from_name=from_name,
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        reply_to_name=reply_to_name,
        subject=subject,
        html=html,
        text=text,
        amp_html=amp_html,
        template_slug=template_slug,
        template_version=template_version,
        project_id=project_id,
        tag=tag if tag is not None else template_slug,
        metadata=metadata,
        headers=headers,
        substitution_data=substitution_data,
        options=options,
        attachments=attachments,
    )


def _attachments(value: Any, errors: _Errors) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors.add("attachments", "The attachments field must be a list.")
        return ()
    found: list[Attachment] = []
    total = 0
    for i, item in enumerate(value):
        prefix = f"attachments.{i}"
        if not isinstance(item, dict):
            errors.add(prefix, "Each attachment must be an object with name, type and data.")
            continue
        name, mime_type, data = item.get("name"), item.get("type"), item.get("data")
        ok = True
        if not isinstance(name, str) or not name or len(name) > 255 or unsafe_character(name) or "/" in name:
            errors.add(
                f"{prefix}.name", "The attachment name is required: up to 255 characters, no line breaks or '/'."
            )
            ok = False
        if (
            not isinstance(mime_type, str)
            or len(mime_type) > MAX_ATTACHMENT_TYPE
            or not _MIME_TYPE.fullmatch(mime_type)
        ):
            errors.add(
                f"{prefix}.type",
                "The attachment type must be a MIME type such as application/pdf, optionally with parameters "
                "such as text/plain; charset=utf-8.",
            )
            ok = False
        if not isinstance(data, str) or not data or not _BASE64.fullmatch(data) or len(data) % 4:
            errors.add(f"{prefix}.data", "The attachment data must be base64 without line breaks.")
            ok = False
        else:
            try:
                base64.b64decode(data, validate=True)
            except binascii.Error:
                errors.add(f"{prefix}.data", "The attachment data must be base64 without line breaks.")
                ok = False
            total += len(data)
        if ok:
            found.append(Attachment(name=str(name), type=str(mime_type), data=str(data)))
    if total > MAX_ATTACHMENTS_TOTAL:
        errors.add("attachments", "Attachments must not exceed 10 MB in total (base64).")
    return tuple(found)


def parse_send_request(body: dict[str, Any], *, undisclosed_to: bool = False) -> SendRequest:
    """A ``SendRequest`` from a decoded body, or ``ValidationFailed`` listing every problem.

    ``undisclosed_to`` (SMTP submissions only) lets a send have no ``to`` when it has ``cc`` or ``bcc``
    recipients: it is delivered with ``To: undisclosed-recipients:;``."""
    errors = _Errors()
    if "scheduled_at" in body:
        errors.add("scheduled_at", "Use POST /api/emails/scheduled to schedule an email.")
    request = _parse(body, errors, undisclosed_to=undisclosed_to)
    if errors.errors or request is None:
        raise ValidationFailed(errors.errors)
    return request


def parse_scheduled_at(value: Any, now: datetime) -> datetime:
    """``scheduled_at``: ISO-8601, naive meaning UTC, between 5 minutes and 30 days ahead."""
    if value in (None, ""):
        raise ValidationFailed({"scheduled_at": ["The scheduled delivery time is required."]})
    if not isinstance(value, str):
        raise ValidationFailed({"scheduled_at": ["The scheduled delivery time must be a valid date."]})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed({"scheduled_at": ["The scheduled delivery time must be a valid date."]}) from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment <= now:
        raise ValidationFailed({"scheduled_at": ["The scheduled delivery time must be in the future."]})
    if moment < now + SCHEDULE_MIN_AHEAD:
        raise ValidationFailed({"scheduled_at": ["The scheduled delivery time must be at least 5 minutes ahead."]})
    if moment > now + SCHEDULE_MAX_AHEAD:
        raise ValidationFailed({"scheduled_at": ["The scheduled delivery time must be within the next 30 days."]})
    return moment


def parse_schedule_request(body: dict[str, Any], now: datetime) -> tuple[SendRequest, datetime]:
    """A send plus its ``scheduled_at``; every problem of both reported together."""
    errors = _Errors()
    request = _parse({k: v for k, v in body.items() if k != "scheduled_at"}, errors)
    scheduled_at = None
    try:
        scheduled_at = parse_scheduled_at(body.get("scheduled_at"), now)
    except ValidationFailed as exc:
        for name, messages in exc.errors.items():
            for message in messages:
                errors.add(name, message)
    if errors.errors or request is None or scheduled_at is None:
        raise ValidationFailed(errors.errors)
    return request, scheduled_at
