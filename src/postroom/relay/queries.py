"""SQL for bounce intake: finding the recipient a report is about.

Not tenant-scoped on purpose, like the job handlers' lookups: the ids come from VERP addresses signed with the
server secret, and a Message-ID carries 48 random bits, so a report can only name mail Postroom really sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, exists, select

from postroom.models import email_events, messages, recipients

_RECIPIENT_COLUMNS = (
    recipients,
    messages.c.request_id,
    messages.c.message_id_header,
)


def recipients_by_ids(conn: Connection, recipient_ids: Sequence[int]) -> Sequence[Row[Any]]:
    """The recipients (with their message's request id and Message-ID) among ``recipient_ids``."""
    if not recipient_ids:
        return []
    return conn.execute(
        select(*_RECIPIENT_COLUMNS)
        .select_from(recipients.join(messages, messages.c.id == recipients.c.message_id))
        .where(recipients.c.id.in_(list(recipient_ids)))
        .order_by(recipients.c.id)
    ).fetchall()


def recipients_by_message_header(conn: Connection, message_id_header: str) -> Sequence[Row[Any]]:
    """Every recipient of the message whose ``Message-ID`` header is ``message_id_header`` (``<…>``)."""
    return conn.execute(
        select(*_RECIPIENT_COLUMNS)
        .select_from(recipients.join(messages, messages.c.id == recipients.c.message_id))
        .where(messages.c.message_id_header == message_id_header)
        .order_by(recipients.c.id)
    ).fetchall()


def has_event(conn: Connection, message_id: str, recipient_id: int, event_type: str) -> bool:
    """Whether the recipient already has an event of ``event_type`` (a report delivered twice records once)."""
    found = exists().where(
        email_events.c.message_id == message_id,  # indexed: the message's few events, not the team's
        email_events.c.recipient_id == recipient_id,
        email_events.c.type == event_type,
    )
    return bool(conn.execute(select(found)).scalar())
