"""Wire shapes for emails, events and scheduled sends (lettr-api.md §5.2, §7.1)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Row

from postroom.core.clock import iso_event, iso_resource
from postroom.errors import ValidationFailed

DEFAULT_WINDOW = timedelta(days=10)


def event_body(row: Row[Any]) -> dict[str, Any]:
    """One EmailEvent: the fields every event has, then the type's own fields."""
    m = row._mapping
    details: dict[str, Any] = msgspec.json.decode(m["details"]) if m["details"] else {}
    rcpt_to = m["rcpt_to"]
    recipient_domain = rcpt_to.rsplit("@", 1)[1].lower()
    tag = m["m_tag"]
    body: dict[str, Any] = {
        "event_id": m["event_id"],
        "type": m["type"],
        "timestamp": iso_event(m["occurred_at"]),
        "request_id": m["request_id"],
        "message_id": m["m_message_id_header"].strip("<>"),
        "rcpt_to": rcpt_to.lower(),
        "raw_rcpt_to": rcpt_to,
        "recipient_domain": recipient_domain,
        "mailbox_provider": None,
        "mailbox_provider_region": None,
        "subject": m["m_subject"],
        "friendly_from": m["m_from_email"],
        "sending_domain": m["m_sending_domain"],
        "sending_ip": None,
        "click_tracking": False,
        "open_tracking": False,
        "transactional": bool(m["m_transactional"]),
        "msg_size": m["m_msg_size"],
        "injection_time": iso_event(m["m_created_at"]),
        "rcpt_meta": msgspec.json.decode(m["m_metadata"]) if m["m_metadata"] else None,
        "campaign_id": None,
        "template_id": None,
        "template_version": None,
        "ip_pool": None,
        "msg_from": m["m_from_email"],
        "rcpt_type": details.pop("rcpt_type", "to"),
        "rcpt_tags": [tag] if tag else [],
        "amp_enabled": False,
        "delv_method": "esmtp",
        "recv_method": "rest",
        "routing_domain": recipient_domain,
        "scheduled_time": None,
    }
    if m["bounce_class"] is not None:
        body["bounce_class"] = m["bounce_class"]
    body.update(details)
    return body


SENT_EMAIL_FIELDS = (
    "event_id", "type", "timestamp", "request_id", "message_id", "subject", "friendly_from", "sending_domain",
    "rcpt_to", "raw_rcpt_to", "recipient_domain", "mailbox_provider", "mailbox_provider_region", "sending_ip",
    "click_tracking", "open_tracking", "transactional", "msg_size", "injection_time", "rcpt_meta",
)  # fmt: skip


def sent_email_body(row: Row[Any]) -> dict[str, Any]:
    event = event_body(row)
    return {name: event[name] for name in SENT_EMAIL_FIELDS}


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
