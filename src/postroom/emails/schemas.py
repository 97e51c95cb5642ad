"""Wire shapes for emails, events and scheduled sends."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, UnsetType
from sqlalchemy import Row

from postroom.core.clock import iso_event, iso_resource
from postroom.core.headers import SAFE_CHARACTER
from postroom.core.openapi import Pagination, RowId, Timestamp
from postroom.errors import ValidationFailed
from postroom.messages.events import event_body

DEFAULT_WINDOW = timedelta(days=10)


def sent_email_body(row: Row[Any]) -> dict[str, Any]:
    """A ``GET /emails`` item: the event's fields that ``SentEmail`` documents, in its order."""
    event = event_body(row)
    return {name: event[name] for name in SentEmail.__struct_fields__}


def encode_cursor(event_row_id: int) -> str:
    return base64.urlsafe_b64encode(f"e{event_row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("e"):
            raise ValueError(cursor)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed({"cursor": ["The cursor parameter is invalid."]}) from None


def parse_date(name: str, value: str | None, default: datetime, *, end_of_day: bool = False) -> datetime:
    """An ISO date or date-time from the query string; a date alone means its start (or end, for ``to``)."""
    if value is None or value == "":
        return default
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed({name: [f"The {name} parameter must be a valid date."]}) from None
    if len(value) == 10 and end_of_day:
        moment += timedelta(days=1) - timedelta(microseconds=1)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def cursor_page_body(
    items: list[dict[str, Any]], total: int, since: datetime, until: datetime, next_cursor: str | None, per_page: int
) -> dict[str, Any]:
    return {
        "events": {
            "data": items,
            "total_count": total,
            "from": iso_event(since),
            "to": iso_event(until),
            "pagination": {"next_cursor": next_cursor, "per_page": per_page},
        }
    }


def transmission_state(statuses: Sequence[str]) -> str:
    """``scheduled`` while any recipient waits, then ``delivered``, ``bounced`` or ``failed``."""
    if any(s in ("queued", "deferred") for s in statuses):
        return "scheduled"
    if any(s == "delivered" for s in statuses):
        return "delivered"
    if any(s == "bounced" for s in statuses):
        return "bounced"
    return "failed"


def scheduled_body(row: Row[Any], events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    recipients: list[str] = msgspec.json.decode(row.recipients)
    return {
        "request_id": row.id,
        "transmission_id": row.transmission_id,
        "state": row.state,
        "scheduled_at": iso_resource(row.scheduled_at),
        "from": row.from_email,
        "from_name": row.from_name,
        "subject": row.subject,
        "recipients": recipients,
        "num_recipients": len(recipients),
        "accepted": row.accepted,
        "rejected": row.rejected,
        "tag": row.tag,
        "failure_reason": row.failure_reason,
        "events": events or [],
        "created_at": iso_resource(row.created_at),
        "updated_at": iso_resource(row.updated_at),
    }


# -- OpenAPI documentation (postroom.core.openapi): what the routes above accept and answer ---------------------

Address = Annotated[str, msgspec.Meta(max_length=255, extra_json_schema={"format": "email"})]
HeaderText255 = Annotated[str, msgspec.Meta(max_length=255, pattern=f"^{SAFE_CHARACTER}*$")]
"""A display name: no line breaks or control characters (``postroom.core.headers``)."""


_MIME_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(?:; ?[A-Za-z0-9.+-]+=[A-Za-z0-9.+-]+)*$"
)
_BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"


class Attachment(msgspec.Struct):
    """Each field required; ``name`` without line breaks or ``/``; ``data`` is base64 without line breaks."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=f"^(?:(?!/){SAFE_CHARACTER})+$")]
    type: Annotated[str, msgspec.Meta(max_length=900, pattern=_MIME_PATTERN)]
    data: Annotated[str, msgspec.Meta(min_length=4, pattern=_BASE64_PATTERN)]


class SendOptions(msgspec.Struct, kw_only=True):
    click_tracking: bool | UnsetType = UNSET
    open_tracking: bool | UnsetType = UNSET
    transactional: bool | UnsetType = UNSET
    inline_css: bool | UnsetType = UNSET
    perform_substitutions: bool | UnsetType = UNSET


class SendEmailInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A send: ``subject`` and one of ``html``/``text``/``amp_html`` unless
    ``template_slug``; at most 50 recipients across ``to``, ``cc`` and ``bcc``."""

    from_: Address = msgspec.field(name="from")
    to: Annotated[list[Address], msgspec.Meta(min_length=1, max_length=50)]
    from_name: HeaderText255 | None | UnsetType = UNSET
    cc: Annotated[list[Address], msgspec.Meta(max_length=50)] | None | UnsetType = UNSET
    bcc: Annotated[list[Address], msgspec.Meta(max_length=50)] | None | UnsetType = UNSET
    reply_to: Address | None | UnsetType = UNSET
    reply_to_name: HeaderText255 | None | UnsetType = UNSET
    subject: Annotated[str, msgspec.Meta(max_length=998, pattern=f"^{SAFE_CHARACTER}*$")] | None | UnsetType = UNSET
    html: str | None | UnsetType = UNSET
    text: str | None | UnsetType = UNSET
    amp_html: str | None | UnsetType = UNSET
    template_slug: Annotated[str, msgspec.Meta(max_length=255)] | None | UnsetType = UNSET
    template_version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None | UnsetType = UNSET
    project_id: RowId | None | UnsetType = UNSET
    tag: Annotated[str, msgspec.Meta(max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")] | None | UnsetType = UNSET
    metadata: Annotated[dict[str, str], msgspec.Meta(max_length=50)] | None | UnsetType = UNSET
    headers: Annotated[dict[str, str], msgspec.Meta(max_length=10)] | None | UnsetType = UNSET
    substitution_data: dict[str, Any] | None | UnsetType = UNSET
    options: SendOptions | None | UnsetType = UNSET
    attachments: list[Attachment] | None | UnsetType = UNSET


SEND_CONTENT_RULE = {
    "anyOf": [
        {"required": ["template_slug"]},
        {"required": ["subject", "html"]},
        {"required": ["subject", "text"]},
        {"required": ["subject", "amp_html"]},
    ]
}
"""Without ``template_slug``, a send needs ``subject`` and ``html``, ``text`` or ``amp_html`` (non-empty)."""


class ScheduleEmailInput(SendEmailInput, kw_only=True, forbid_unknown_fields=True):
    """A send plus ``scheduled_at`` (ISO-8601, 5 minutes to 30 days ahead; naive means UTC)."""

    scheduled_at: Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]


class SendResult(msgspec.Struct):
    request_id: str
    accepted: int
    rejected: int


class EmailEvent(msgspec.Struct, kw_only=True):
    """One EmailEvent: the common fields, then the type's own (``bounce_class`` when the event
    has one, and ``reason``, ``error_code`` … as recorded)."""

    event_id: str
    type: str
    timestamp: Timestamp
    request_id: str
    message_id: str
    rcpt_to: str
    raw_rcpt_to: str
    recipient_domain: str
    mailbox_provider: str | None
    mailbox_provider_region: str | None
    subject: str
    friendly_from: str
    sending_domain: str
    sending_ip: str | None
    click_tracking: bool
    open_tracking: bool
    transactional: bool
    msg_size: int
    injection_time: Timestamp
    rcpt_meta: dict[str, str] | None
    campaign_id: str | None
    template_id: str | None
    template_version: str | None
    ip_pool: str | None
    msg_from: str
    rcpt_type: str
    rcpt_tags: list[str]
    amp_enabled: bool
    delv_method: str
    recv_method: str
    routing_domain: str
    scheduled_time: str | None
    bounce_class: int | UnsetType = UNSET


class SentEmail(msgspec.Struct, kw_only=True):
    """``GET /emails`` items: a recipient's injection event, in the list's field set."""

    event_id: str
    type: str
    timestamp: Timestamp
    request_id: str
    message_id: str
    subject: str
    friendly_from: str
    sending_domain: str
    rcpt_to: str
    raw_rcpt_to: str
    recipient_domain: str
    mailbox_provider: str | None
    mailbox_provider_region: str | None
    sending_ip: str | None
    click_tracking: bool
    open_tracking: bool
    transactional: bool
    msg_size: int
    injection_time: Timestamp
    rcpt_meta: dict[str, str] | None


class CursorPagination(msgspec.Struct):
    next_cursor: str | None
    per_page: int


class SentEmailPage(msgspec.Struct):
    data: list[SentEmail]
    total_count: int
    from_: Timestamp = msgspec.field(name="from")
    to: Timestamp
    pagination: CursorPagination


class EmailEventPage(msgspec.Struct):
    data: list[EmailEvent]
    total_count: int
    from_: Timestamp = msgspec.field(name="from")
    to: Timestamp
    pagination: CursorPagination


class SentEmailList(msgspec.Struct):
    events: SentEmailPage


class EmailEventList(msgspec.Struct):
    events: EmailEventPage


class Transmission(msgspec.Struct, kw_only=True):
    """``GET /emails/{request_id}``: ``state`` is ``scheduled``, ``delivered``, ``bounced`` or ``failed``."""

    transmission_id: str
    state: str
    scheduled_at: Timestamp | None
    from_: str = msgspec.field(name="from")
    from_name: str | None
    subject: str
    recipients: list[str]
    num_recipients: int
    events: list[EmailEvent]


class ScheduledEmail(msgspec.Struct, kw_only=True):
    """A ScheduledEmail; ``transmission_id`` is null until the send goes out."""

    request_id: str
    transmission_id: str | None
    state: str
    scheduled_at: Timestamp
    from_: str = msgspec.field(name="from")
    from_name: str | None
    subject: str | None
    recipients: list[str]
    num_recipients: int
    accepted: int
    rejected: int
    tag: str | None
    failure_reason: str | None
    events: list[EmailEvent]
    created_at: Timestamp
    updated_at: Timestamp


class ScheduledEmailList(msgspec.Struct):
    scheduled_emails: list[ScheduledEmail]
    pagination: Pagination


class Suppression(msgspec.Struct):
    email: str
    reason: str
    source: str | None
    created_at: Timestamp


class SuppressionList(msgspec.Struct):
    suppressions: list[Suppression]


class RemovedSuppression(msgspec.Struct):
    email: str
