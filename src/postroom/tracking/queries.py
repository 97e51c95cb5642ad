"""Every SQL statement of open and click tracking. Tokens carry a recipient id; each request is answered from that
recipient's row (a primary-key lookup) and an update of the same row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, update

from postroom.db.direct import Prepared
from postroom.models import recipients

_RECIPIENT = Prepared(
    select(
        recipients.c.id,
        recipients.c.team_id,
        recipients.c.message_id,
        recipients.c.email,
        recipients.c.rcpt_type,
        recipients.c.status,
        recipients.c.updated_at,
    ).where(recipients.c.id == bindparam("id"))
)
_FIRST = {
    column: Prepared(
        update(recipients)
        .where(recipients.c.id == bindparam("recipient_id"), recipients.c[column].is_(None))
        .values({column: bindparam("now")})
    )
    for column in ("opened_at", "clicked_at")
}


def recipient(conn: Connection, recipient_id: int) -> Row[Any] | None:
    return _RECIPIENT.execute(conn, {"id": recipient_id}).first()  # type: ignore[no-any-return]


def mark_first(conn: Connection, recipient_id: int, column: str, now: datetime) -> bool:
    """Set ``opened_at`` or ``clicked_at`` unless it is set already; whether this call set it."""
    return bool(_FIRST[column].execute(conn, {"recipient_id": recipient_id, "now": now}).rowcount)
