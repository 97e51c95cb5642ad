"""Every SQL statement about webhooks, their pending events, batches, attempts and alerts.

Tenant-scoped functions take the team first. Functions without a team serve job handlers, which carry ids the
system itself wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, delete, func, or_, select, true, update

from postroom.db.direct import Prepared
from postroom.models import webhook_alerts, webhook_attempts, webhook_batches, webhook_events, webhooks

# -- endpoints ------------------------------------------------------------------------------------------------


def insert_webhook(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(webhooks.insert(), values)


def webhooks_of_team(conn: Connection, team_id: int) -> Sequence[Row[Any]]:
    return conn.execute(
        select(webhooks).where(webhooks.c.team_id == team_id).order_by(webhooks.c.created_at, webhooks.c.id)
    ).fetchall()


def webhook_in_team(conn: Connection, team_id: int, webhook_id: str) -> Row[Any] | None:
    return conn.execute(select(webhooks).where(webhooks.c.team_id == team_id, webhooks.c.id == webhook_id)).first()


def webhook_with_url_key(conn: Connection, team_id: int, url_key: str) -> Row[Any] | None:
    return conn.execute(
        select(webhooks.c.id).where(webhooks.c.team_id == team_id, webhooks.c.url_key == url_key)
    ).first()


def update_webhook(conn: Connection, team_id: int, webhook_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(webhooks).where(webhooks.c.team_id == team_id, webhooks.c.id == webhook_id).values(**values))


def delete_webhook(conn: Connection, team_id: int, webhook_id: str) -> bool:
    result = conn.execute(delete(webhooks).where(webhooks.c.team_id == team_id, webhooks.c.id == webhook_id))
    return result.rowcount == 1


def webhook_by_id(conn: Connection, webhook_id: str) -> Row[Any] | None:
    return conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).first()


def update_webhook_by_id(conn: Connection, webhook_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(**values))


# -- fan-out (on the accept and delivery paths: statements built once) ----------------------------------------

_SUBSCRIBERS = Prepared(
    select(webhooks.c.id, webhooks.c.event_types, webhooks.c.flush_at).where(
        webhooks.c.team_id == bindparam("team_id"), webhooks.c.enabled == true()
    )
)
# Every email event of a team with webhooks runs these two (db/direct.py).
_INSERT_PENDING = Prepared(webhook_events.insert())
_SCHEDULE_FLUSH = Prepared(
    update(webhooks)
    .where(
        webhooks.c.id == bindparam("webhook_id"),
        or_(webhooks.c.flush_at.is_(None), webhooks.c.flush_at < bindparam("threshold")),
    )
    .values(flush_at=bindparam("flush_at"))
)


def enabled_webhooks(conn: Connection, team_id: int) -> Sequence[Any]:
    """The team's enabled endpoints: id, event filter and when their next batch forms."""
    return _SUBSCRIBERS.execute(conn, {"team_id": team_id}).fetchall()  # type: ignore[no-any-return]


def insert_pending_events(conn: Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:  # one per subscribed endpoint: most teams have one
        _INSERT_PENDING.execute(conn, row)


def schedule_flush(conn: Connection, webhook_id: str, *, flush_at: datetime, threshold: datetime) -> bool:
    """Set ``flush_at`` unless a flush is already due at or after ``threshold``; True when this call set it."""
    result = _SCHEDULE_FLUSH.execute(conn, {"webhook_id": webhook_id, "flush_at": flush_at, "threshold": threshold})
    return bool(result.rowcount == 1)


def clear_flush(conn: Connection, webhook_id: str) -> None:
    conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(flush_at=None))


def pending_events(conn: Connection, webhook_id: str, limit: int, *, lock: bool = True) -> Sequence[Any]:
    """The oldest events still waiting for a batch; with ``lock`` on PostgreSQL, rows another flush holds are
    skipped."""
    query = (
        select(webhook_events.c.id, webhook_events.c.event_id, webhook_events.c.event_name)
        .where(webhook_events.c.webhook_id == webhook_id, webhook_events.c.batch_id.is_(None))
        .order_by(webhook_events.c.id)
        .limit(limit)
    )
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return conn.execute(query).fetchall()


def has_pending_events(conn: Connection, webhook_id: str) -> bool:
    waiting = select(webhook_events.c.id).where(
        webhook_events.c.webhook_id == webhook_id, webhook_events.c.batch_id.is_(None)
    )
    return conn.execute(waiting.limit(1)).first() is not None


def assign_events(conn: Connection, event_row_ids: Sequence[int], batch_id: str) -> int:
    """Mark still-waiting events as the batch's; how many were still waiting."""
    result = conn.execute(
        update(webhook_events)
        .where(webhook_events.c.id.in_(event_row_ids), webhook_events.c.batch_id.is_(None))
        .values(batch_id=batch_id)
    )
    return int(result.rowcount)


def drop_pending_events(conn: Connection, webhook_id: str) -> None:
    conn.execute(
        delete(webhook_events).where(webhook_events.c.webhook_id == webhook_id, webhook_events.c.batch_id.is_(None))
    )


def stranded_webhooks(conn: Connection, *, created_before: datetime, flush_before: datetime) -> Sequence[str]:
    """Enabled endpoints with events waiting since ``created_before`` and no flush due after ``flush_before``."""
    waiting = (
        select(webhook_events.c.webhook_id)
        .where(webhook_events.c.batch_id.is_(None), webhook_events.c.created_at < created_before)
        .distinct()
        .scalar_subquery()
    )
    return (
        conn.execute(
            select(webhooks.c.id).where(
                webhooks.c.enabled == true(),
                webhooks.c.id.in_(waiting),
                or_(webhooks.c.flush_at.is_(None), webhooks.c.flush_at < flush_before),
            )
        )
        .scalars()
        .all()
    )


# -- batches and attempts ---------------------------------------------------------------------------------------


def insert_batch(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(webhook_batches.insert(), values)


def batch_by_id(conn: Connection, batch_id: str) -> Row[Any] | None:
    return conn.execute(select(webhook_batches).where(webhook_batches.c.id == batch_id)).first()


def batch_in_team(conn: Connection, team_id: int, webhook_id: str, batch_id: str) -> Row[Any] | None:
    return conn.execute(
        select(webhook_batches).where(
            webhook_batches.c.team_id == team_id,
            webhook_batches.c.webhook_id == webhook_id,
            webhook_batches.c.id == batch_id,
        )
    ).first()


def update_batch(conn: Connection, batch_id: str, values: dict[str, Any], *, only_in: Sequence[str] = ()) -> bool:
    query = update(webhook_batches).where(webhook_batches.c.id == batch_id)
    if only_in:
        query = query.where(webhook_batches.c.status.in_(only_in))
    return conn.execute(query.values(**values)).rowcount == 1


def cancel_open_batches(conn: Connection, webhook_id: str, now: datetime, reason: str) -> None:
    conn.execute(
        update(webhook_batches)
        .where(webhook_batches.c.webhook_id == webhook_id, webhook_batches.c.status.in_(("pending", "retrying")))
        .values(status="cancelled", last_error=reason, next_attempt_at=None, updated_at=now)
    )


def insert_attempt(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(webhook_attempts.insert(), values)


def batches_page(
    conn: Connection, team_id: int, webhook_id: str, *, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    """Newest first; and how many the endpoint has in all."""
    condition = and_(webhook_batches.c.team_id == team_id, webhook_batches.c.webhook_id == webhook_id)
    total = int(conn.execute(select(func.count()).select_from(webhook_batches).where(condition)).scalar_one())
    rows = conn.execute(
        select(webhook_batches)
        .where(condition)
        .order_by(webhook_batches.c.created_at.desc(), webhook_batches.c.id.desc())
        .offset(offset)
        .limit(limit)
    ).fetchall()
    return rows, total


def attempts_of(conn: Connection, team_id: int, batch_ids: Sequence[str]) -> Sequence[Row[Any]]:
    if not batch_ids:
        return []
    return conn.execute(
        select(webhook_attempts)
        .where(webhook_attempts.c.team_id == team_id, webhook_attempts.c.batch_id.in_(batch_ids))
        .order_by(webhook_attempts.c.id)
    ).fetchall()


# -- alerts -----------------------------------------------------------------------------------------------------


def insert_alert(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(webhook_alerts.insert(), values)


def alerts_of(conn: Connection, team_id: int, limit: int) -> Sequence[Row[Any]]:
    return conn.execute(
        select(webhook_alerts)
        .where(webhook_alerts.c.team_id == team_id)
        .order_by(webhook_alerts.c.created_at.desc(), webhook_alerts.c.id.desc())
        .limit(limit)
    ).fetchall()
