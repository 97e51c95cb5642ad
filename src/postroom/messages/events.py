"""One message event as the API and the webhooks show it (the EmailEvent shape): the fields every event has, then
the type's own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from sqlalchemy import Connection, Row, select

from postroom.core.clock import iso_event
from postroom.models import email_events, messages


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
        "click_tracking": bool(m["m_click_tracking"]),
        "open_tracking": bool(m["m_open_tracking"]),
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
        "recv_method": m["m_recv_method"],
        "routing_domain": recipient_domain,
        "scheduled_time": None,
    }
    if m["bounce_class"] is not None:
        body["bounce_class"] = m["bounce_class"]
    body.update(details)
    return body


def message_columns() -> list[Any]:
    """The message's columns an event row carries (``m_…``), as ``event_body`` reads them."""
    return [
        messages.c.from_email.label("m_from_email"),
        messages.c.from_name.label("m_from_name"),
        messages.c.sending_domain.label("m_sending_domain"),
        messages.c.subject.label("m_subject"),
        messages.c.message_id_header.label("m_message_id_header"),
        messages.c.tag.label("m_tag"),
        messages.c.metadata.label("m_metadata"),
        messages.c.transactional.label("m_transactional"),
        messages.c.msg_size.label("m_msg_size"),
        messages.c.created_at.label("m_created_at"),
        messages.c.recv_method.label("m_recv_method"),
        messages.c.open_tracking.label("m_open_tracking"),
        messages.c.click_tracking.label("m_click_tracking"),
    ]


def events_by_event_ids(conn: Connection, team_id: int, event_ids: Sequence[str]) -> Sequence[Row[Any]]:
    """The named events with their messages, oldest first (the webhook batch builder's read)."""
    if not event_ids:
        return []
    return conn.execute(
        select(email_events, messages.c.request_id, messages.c.content, *message_columns())
        .select_from(email_events.join(messages, messages.c.id == email_events.c.message_id))
        .where(email_events.c.team_id == team_id, email_events.c.event_id.in_(list(event_ids)))
        .order_by(email_events.c.id)
    ).fetchall()
