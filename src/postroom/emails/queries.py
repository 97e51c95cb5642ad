"""Every SQL statement about messages, recipients, events, idempotency records, suppressions and scheduled sends.
Tenant-scoped functions take the team first."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, delete, func, literal_column, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import FromClause

from postroom.db.direct import Prepared
from postroom.messages.events import message_columns
from postroom.models import (
    api_keys,
    email_events,
    event_counts,
    idempotency_keys,
    messages,
    recipients,
    scheduled_emails,
    suppressions,
)
from postroom.models.types import UTCDateTime

# Statements on the accept and delivery paths are built once and run directly on SQLite (``db/direct.py``); rows
# go in as parameters (building ``.values(**row)`` per call costs several times the insert itself).
_INSERT_MESSAGE = Prepared(messages.insert())
_INSERT_RECIPIENT = Prepared(recipients.insert().returning(recipients.c.id))
_INSERT_EVENT = Prepared(email_events.insert())

# -- messages and recipients ----------------------------------------------------------------------------------


def insert_message(conn: Connection, values: dict[str, Any]) -> None:
    _INSERT_MESSAGE.execute(conn, values)


def insert_recipient(conn: Connection, values: dict[str, Any]) -> int:
    return int(_INSERT_RECIPIENT.execute(conn, values).scalar_one())


_MESSAGE_BY_ID = Prepared(select(messages).where(messages.c.id == bindparam("message_id")))
_NOT_FINAL = or_(recipients.c.status == "queued", recipients.c.status == "deferred")
_PENDING_RECIPIENTS = Prepared(
    select(recipients)
    .where(recipients.c.message_id == bindparam("message_id"), recipients.c.domain == bindparam("domain"), _NOT_FINAL)
    .order_by(recipients.c.id)
)
_MOVE_RECIPIENT = Prepared(
    update(recipients)
    .where(recipients.c.id == bindparam("recipient_id"), _NOT_FINAL)
    .values(
        status=bindparam("new_status"),
        attempts=recipients.c.attempts + 1,
        last_error=bindparam("error"),
        updated_at=bindparam("now"),
    )
)


def message_by_id(conn: Connection, message_id: str) -> Row[Any] | None:
    """For job handlers, which carry ids the system itself wrote."""
    return _MESSAGE_BY_ID.execute(conn, {"message_id": message_id}).first()  # type: ignore[no-any-return]


def message_by_request_id(conn: Connection, team_id: int, request_id: str) -> Row[Any] | None:
    return conn.execute(
        select(messages).where(messages.c.team_id == team_id, messages.c.request_id == request_id)
    ).first()


def pending_recipients(conn: Connection, message_id: str, domain: str) -> Sequence[Row[Any]]:
    return _PENDING_RECIPIENTS.execute(conn, {"message_id": message_id, "domain": domain}).fetchall()  # type: ignore[no-any-return]


def recipients_of(conn: Connection, message_id: str) -> Sequence[Row[Any]]:
    return conn.execute(
        select(recipients).where(recipients.c.message_id == message_id).order_by(recipients.c.id)
    ).fetchall()


def move_recipient(conn: Connection, recipient_id: int, status: str, *, now: datetime, error: str | None) -> bool:
    """Change a recipient's status, but only forward: delivered and bounced are final."""
    params = {"recipient_id": recipient_id, "new_status": status, "error": error, "now": now}
    return bool(_MOVE_RECIPIENT.execute(conn, params).rowcount == 1)


# -- events ---------------------------------------------------------------------------------------------------


def insert_event(conn: Connection, values: dict[str, Any]) -> None:
    _INSERT_EVENT.execute(conn, values)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``GET /api/emails`` and ``GET /api/emails/events``; ``before_id`` is the decoded cursor."""

    since: datetime
    until: datetime
    limit: int
    types: Sequence[str] | None = None
    recipients_in: Sequence[str] | None = None
    request_id: str | None = None
    bounce_classes: Sequence[int] | None = None
    before_id: int | None = None


HOUR = timedelta(hours=1)
COUNTER_SHARDS = 8
"""PostgreSQL transactions add to one of this many rows per team, type and hour, chosen at random."""


def _count_upsert(dialect: Any) -> Prepared:
    statement = dialect.insert(event_counts)
    return Prepared(
        statement.on_conflict_do_update(
            index_elements=[
                event_counts.c.team_id,
                event_counts.c.type,
                event_counts.c.hour_start,
                event_counts.c.shard,
            ],
            set_={"count": event_counts.c.count + statement.excluded.count},
        )
    )


_ADD_COUNT = {"sqlite": _count_upsert(sqlite), "postgresql": _count_upsert(postgresql)}


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def add_event_counts(conn: Connection, counts: Iterable[tuple[tuple[int, str, datetime], int]]) -> None:
    """Add to the hourly counters: ``((team_id, type, hour_start), how many)`` in the order given (callers sort,
    so concurrent PostgreSQL transactions take the counters' row locks in one order and cannot deadlock)."""
    dialect = conn.dialect.name
    shard = random.randrange(COUNTER_SHARDS) if dialect == "postgresql" else 0  # noqa: S311 - spreading only
    statement = _ADD_COUNT[dialect]
    for (team_id, event_type, hour_start), count in counts:
        params = {"team_id": team_id, "type": event_type, "hour_start": hour_start, "shard": shard, "count": count}
        statement.execute(conn, params)


def _event_filters(team_id: int, query: EventQuery) -> list[ColumnElement[bool]]:
    """The filters besides the time range; ``request_id`` needs ``messages`` joined."""
    conditions = [email_events.c.team_id == team_id]
    if query.types:
        conditions.append(email_events.c.type.in_(query.types))
    if query.recipients_in:
        conditions.append(func.lower(email_events.c.rcpt_to).in_([r.lower() for r in query.recipients_in]))
    if query.request_id is not None:
        conditions.append(messages.c.request_id == query.request_id)
    if query.bounce_classes:
        conditions.append(email_events.c.bounce_class.in_(query.bounce_classes))
    return conditions


def _counted_directly(conn: Connection, team_id: int, query: EventQuery, since: datetime, before: datetime) -> int:
    """Matching events with ``since <= occurred_at < before``, counted row by row on an index."""
    if since >= before:
        return 0
    source: FromClause = email_events
    if query.request_id is not None:
        source = email_events.join(messages, messages.c.id == email_events.c.message_id)
    conditions = [
        *_event_filters(team_id, query),
        email_events.c.occurred_at >= since,
        email_events.c.occurred_at < before,
    ]
    return int(conn.execute(select(func.count()).select_from(source).where(*conditions)).scalar_one())


def count_matching(conn: Connection, team_id: int, query: EventQuery) -> int:
    """How many events match ``query`` in all, exactly.

    Filtered only by team, time and type, the whole hours of the range are summed from ``event_counts`` and only
    the partial hours at its two edges are counted row by row, so the cost does not grow with the number of
    events stored. Filters by recipient, transmission or bounce class are counted row by row on their own index
    (they match a recipient's, a transmission's or the bounces' events only).
    """
    until = query.until + timedelta(microseconds=1)  # ``until`` is inclusive
    if query.recipients_in or query.request_id is not None or query.bounce_classes:
        return _counted_directly(conn, team_id, query, query.since, until)
    first_whole = hour_of(query.since) + (HOUR if hour_of(query.since) != query.since else timedelta(0))
    after_whole = hour_of(until)
    if first_whole >= after_whole:
        return _counted_directly(conn, team_id, query, query.since, until)
    conditions = [
        event_counts.c.team_id == team_id,
        event_counts.c.hour_start >= first_whole,
        event_counts.c.hour_start < after_whole,
    ]
    if query.types:
        conditions.append(event_counts.c.type.in_(query.types))
    whole = conn.execute(select(func.coalesce(func.sum(event_counts.c.count), 0)).where(*conditions)).scalar_one()
    edges = _counted_directly(conn, team_id, query, query.since, first_whole)
    edges += _counted_directly(conn, team_id, query, after_whole, until)
    return int(whole) + edges


def events_page(conn: Connection, team_id: int, query: EventQuery) -> tuple[Sequence[Row[Any]], int]:
    """Newest first, with the message each event belongs to; and how many events match in all."""
    total = count_matching(conn, team_id, query)
    occurred_at: ColumnElement[datetime] = email_events.c.occurred_at
    if conn.dialect.name == "sqlite" and not (query.recipients_in or query.request_id or query.bounce_classes):
        # Walk the team's events newest first (by team and id, or team, type and id) and stop at the page's end.
        # Left to itself SQLite may choose the time-range index instead, and then sort every event of the range
        # to return the newest few; a unary + keeps the time filter off the index choice.
        occurred_at = literal_column("+email_events.occurred_at", UTCDateTime())
    conditions = [*_event_filters(team_id, query), occurred_at >= query.since, occurred_at <= query.until]
    if query.before_id is not None:
        conditions.append(email_events.c.id < query.before_id)
    rows = conn.execute(
        select(email_events, messages.c.request_id, messages.c.content, *message_columns())
        .select_from(email_events.join(messages, messages.c.id == email_events.c.message_id))
        .where(*conditions)
        .order_by(email_events.c.id.desc())
        .limit(query.limit)
    ).fetchall()
    return rows, total


def events_of_message(
    conn: Connection, team_id: int, message_id: str, since: datetime, until: datetime
) -> Sequence[Row[Any]]:
    return conn.execute(
        select(email_events, messages.c.request_id, messages.c.content, *message_columns())
        .select_from(email_events.join(messages, messages.c.id == email_events.c.message_id))
        .where(
            email_events.c.team_id == team_id,
            email_events.c.message_id == message_id,
            email_events.c.occurred_at >= since,
            email_events.c.occurred_at <= until,
        )
        .order_by(email_events.c.id.desc())
    ).fetchall()


# -- idempotency ----------------------------------------------------------------------------------------------


# A send with an Idempotency-Key runs these (db/direct.py).
_IDEMPOTENCY_RECORD = Prepared(
    select(idempotency_keys).where(
        idempotency_keys.c.team_id == bindparam("team_id"),
        idempotency_keys.c.api_key_id == bindparam("api_key_id"),
        idempotency_keys.c.key == bindparam("key"),
    )
)
_INSERT_IDEMPOTENCY_RECORD = Prepared(idempotency_keys.insert().returning(idempotency_keys.c.id))
_COMPLETE_IDEMPOTENCY_RECORD = Prepared(
    update(idempotency_keys)
    .where(idempotency_keys.c.id == bindparam("record_id"))
    .values(
        status="done",
        locked_until=None,
        response_status=bindparam("response_status"),
        response_body=bindparam("response_body"),
    )
)


def idempotency_record(conn: Connection, team_id: int, api_key_id: str, key: str) -> Row[Any] | None:
    found = _IDEMPOTENCY_RECORD.execute(conn, {"team_id": team_id, "api_key_id": api_key_id, "key": key})
    return found.first()  # type: ignore[no-any-return]


def insert_idempotency_record(conn: Connection, values: dict[str, Any]) -> int:
    return int(_INSERT_IDEMPOTENCY_RECORD.execute(conn, values).scalar_one())


def complete_idempotency_record(conn: Connection, record_id: int, *, status: int, body: str) -> None:
    _COMPLETE_IDEMPOTENCY_RECORD.execute(
        conn, {"record_id": record_id, "response_status": status, "response_body": body}
    )


def update_idempotency_record(conn: Connection, record_id: int, values: dict[str, Any]) -> None:
    conn.execute(update(idempotency_keys).where(idempotency_keys.c.id == record_id).values(**values))


def delete_idempotency_record(conn: Connection, record_id: int) -> None:
    conn.execute(delete(idempotency_keys).where(idempotency_keys.c.id == record_id))


def delete_expired_idempotency_records(conn: Connection, now: datetime) -> None:
    conn.execute(delete(idempotency_keys).where(idempotency_keys.c.expires_at < now))


# -- suppressions ---------------------------------------------------------------------------------------------


_SUPPRESSED_AMONG = select(suppressions.c.email).where(
    suppressions.c.team_id == bindparam("team_id"), suppressions.c.email.in_(bindparam("emails", expanding=True))
)
_SUPPRESSED_ONE = Prepared(  # most sends have one recipient
    select(suppressions.c.email).where(
        suppressions.c.team_id == bindparam("team_id"), suppressions.c.email == bindparam("email")
    )
)


def suppressed_among(conn: Connection, team_id: int, addresses: Sequence[str]) -> set[str]:
    """Which of ``addresses`` (compared lower-case) the team's suppression list holds."""
    if not addresses:
        return set()
    if len(addresses) == 1:
        return set(_SUPPRESSED_ONE.execute(conn, {"team_id": team_id, "email": addresses[0].lower()}).scalars())
    rows = conn.execute(_SUPPRESSED_AMONG, {"team_id": team_id, "emails": [a.lower() for a in addresses]})
    return set(rows.scalars())


def add_suppression(conn: Connection, team_id: int, email: str, reason: str, source: str, now: datetime) -> None:
    exists = conn.execute(
        select(suppressions.c.id).where(suppressions.c.team_id == team_id, suppressions.c.email == email.lower())
    ).first()
    if exists is None:
        conn.execute(
            suppressions.insert().values(
                team_id=team_id, email=email.lower(), reason=reason, source=source, created_at=now
            )
        )


def suppressions_of(conn: Connection, team_id: int | None) -> Sequence[Row[Any]]:
    query = select(suppressions).order_by(suppressions.c.created_at.desc(), suppressions.c.id.desc())
    if team_id is not None:
        query = query.where(suppressions.c.team_id == team_id)
    return conn.execute(query).fetchall()


def remove_suppression(conn: Connection, team_id: int, email: str) -> bool:
    result = conn.execute(
        delete(suppressions).where(suppressions.c.team_id == team_id, suppressions.c.email == email.lower())
    )
    return result.rowcount > 0


# -- scheduled sends ------------------------------------------------------------------------------------------


def insert_scheduled(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(scheduled_emails.insert(), values)


def scheduled_in_team(conn: Connection, team_id: int, scheduled_id: str) -> Row[Any] | None:
    return conn.execute(
        select(scheduled_emails).where(scheduled_emails.c.team_id == team_id, scheduled_emails.c.id == scheduled_id)
    ).first()


def key_is_sandbox(conn: Connection, api_key_id: str | None) -> bool:
    """Whether the key that scheduled a send is a sandbox key (then the send goes to the local inbox)."""
    if api_key_id is None:
        return False
    return bool(conn.execute(select(api_keys.c.sandbox).where(api_keys.c.id == api_key_id)).scalar())


def scheduled_by_id(conn: Connection, scheduled_id: str) -> Row[Any] | None:
    """For the release handler, which carries an id the system itself wrote."""
    return conn.execute(select(scheduled_emails).where(scheduled_emails.c.id == scheduled_id)).first()


def scheduled_page(
    conn: Connection, team_id: int, *, state: str | None, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    conditions = [scheduled_emails.c.team_id == team_id]
    if state is not None:
        conditions.append(scheduled_emails.c.state == state)
    total = int(conn.execute(select(func.count()).select_from(scheduled_emails).where(*conditions)).scalar_one())
    rows = conn.execute(
        select(scheduled_emails)
        .where(*conditions)
        .order_by(scheduled_emails.c.scheduled_at, scheduled_emails.c.id)
        .offset(offset)
        .limit(limit)
    ).fetchall()
    return rows, total


def update_scheduled(
    conn: Connection, scheduled_id: str, values: dict[str, Any], *, only_in_state: str | None = None
) -> bool:
    query = update(scheduled_emails).where(scheduled_emails.c.id == scheduled_id)
    if only_in_state is not None:
        query = query.where(scheduled_emails.c.state == only_in_state)
    return conn.execute(query.values(**values)).rowcount == 1
