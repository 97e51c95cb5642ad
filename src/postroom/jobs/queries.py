"""Every SQL statement about work items (the outbox)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, func, or_, select, update

from postroom.db.direct import Prepared
from postroom.models import work_items

_INSERT_ITEM = Prepared(work_items.insert().returning(work_items.c.id))


def insert_item(conn: Connection, *, kind: str, ref: str, run_at: datetime, now: datetime) -> int:
    row = {
        "kind": kind,
        "ref": ref,
        "status": "queued",
        "attempts": 0,
        "run_at": run_at,
        "created_at": now,
        "updated_at": now,
    }
    return int(_INSERT_ITEM.execute(conn, row).scalar_one())


_CLAIMED = (work_items.c.id, work_items.c.kind, work_items.c.ref, work_items.c.attempts, work_items.c.created_at)


def _lease(*, now: Any, lease_until: Any, token: Any) -> dict[str, Any]:
    """The SET clause of a lease, from values or from ``bindparam`` placeholders."""
    return {
        "status": "leased",
        "lease_until": lease_until,
        "lease_token": token,
        "attempts": work_items.c.attempts + 1,
        "updated_at": now,
    }


def _claim_statements(*, skip_locked: bool) -> tuple[Prepared, ...]:
    """``claim``'s two statements, with ``now``, ``room``, ``lease_until_at`` and ``token`` as parameters."""
    lease = _lease(now=bindparam("now"), lease_until=bindparam("lease_until_at"), token=bindparam("token"))
    statements = []
    for due in (
        and_(work_items.c.status == "leased", work_items.c.lease_until < bindparam("now")),
        and_(work_items.c.status == "queued", work_items.c.run_at <= bindparam("now")),
    ):
        candidates = select(work_items.c.id).where(due).order_by(work_items.c.run_at).limit(bindparam("room"))
        if skip_locked:
            candidates = candidates.with_for_update(skip_locked=True)
        statements.append(
            Prepared(
                update(work_items)
                .where(work_items.c.id.in_(candidates.scalar_subquery()))
                .values(**lease)
                .returning(*_CLAIMED)
            )
        )
    return tuple(statements)


_CLAIM = {"sqlite": _claim_statements(skip_locked=False), "postgresql": _claim_statements(skip_locked=True)}


def claim(conn: Connection, *, now: datetime, limit: int, lease_until: datetime, token: str) -> list[Row[Any]]:
    """Lease up to ``limit`` due items: leased ones whose lease ran out (a crashed worker's), then queued ones whose
    time has come, oldest first.

    Two statements, each walking the ``(status, run_at)`` index, rather than one with an OR that makes SQLite read
    and sort every due row. On PostgreSQL ``SKIP LOCKED`` lets several workers claim at once without taking the
    same rows; on SQLite the write lock of ``BEGIN IMMEDIATE`` does the same job.
    """
    claimed: list[Row[Any]] = []
    for statement in _CLAIM[conn.dialect.name]:
        room = limit - len(claimed)
        if room <= 0:
            break
        params = {"now": now, "room": room, "lease_until_at": lease_until, "token": token}
        claimed.extend(statement.execute(conn, params).fetchall())
    return claimed


_CLAIM_ONE = Prepared(
    update(work_items)
    .where(
        work_items.c.id == bindparam("item_id"),
        or_(
            work_items.c.status == "queued",
            and_(work_items.c.status == "leased", work_items.c.lease_until < bindparam("now")),
        ),
    )
    .values(**_lease(now=bindparam("now"), lease_until=bindparam("lease_until_at"), token=bindparam("token")))
    .returning(*_CLAIMED)
)  # built once: building it per job cost a fifth of a PostgreSQL worker's time


def claim_one(conn: Connection, *, item_id: int, now: datetime, lease_until: datetime, token: str) -> Row[Any] | None:
    """Lease one named item if it is due and nobody holds a live lease on it (the pgqueuer path)."""
    params = {"item_id": item_id, "now": now, "lease_until_at": lease_until, "token": token}
    return _CLAIM_ONE.execute(conn, params).first()  # type: ignore[no-any-return]


def stranded(conn: Connection, *, now: datetime, limit: int) -> Sequence[Any]:
    """Items that are due (or whose lease ran out): the reconciler makes sure each has a live queue job."""
    due = or_(
        and_(work_items.c.status == "queued", work_items.c.run_at <= now),
        and_(work_items.c.status == "leased", work_items.c.lease_until < now),
    )
    return conn.execute(
        select(work_items.c.id, work_items.c.kind, work_items.c.attempts)
        .where(due)
        .order_by(work_items.c.run_at)
        .limit(limit)
    ).fetchall()


def _finish(**values: Any) -> Prepared:
    return Prepared(
        update(work_items)
        .where(work_items.c.id == bindparam("item_id"), work_items.c.lease_token == bindparam("token"))
        .values(
            lease_until=None, lease_token=None, updated_at=bindparam("now"), last_error=bindparam("error"), **values
        )
    )


_FINISH_DONE = _finish(status="done")
_FINISH_RETRY = _finish(status="queued", run_at=bindparam("retry_at"))


def finish(
    conn: Connection, *, item_id: int, token: str, now: datetime, error: str | None, retry_at: datetime | None
) -> bool:
    """Record an item's outcome (done, or queued again for ``retry_at``) if this worker still holds its lease;
    False when the lease was lost."""
    params = {"item_id": item_id, "token": token, "now": now, "error": error}
    if retry_at is None:
        return bool(_FINISH_DONE.execute(conn, params).rowcount == 1)
    return bool(_FINISH_RETRY.execute(conn, {**params, "retry_at": retry_at}).rowcount == 1)


def release(conn: Connection, *, token: str, now: datetime) -> Sequence[Any]:
    """Give back every item ``token`` still leases (a worker shutting down): due again at once, for anyone."""
    return conn.execute(
        update(work_items)
        .where(work_items.c.lease_token == token, work_items.c.status == "leased")
        .values(status="queued", run_at=now, lease_until=None, lease_token=None, updated_at=now)
        .returning(work_items.c.id, work_items.c.kind, work_items.c.attempts)
    ).fetchall()


def backlog(conn: Connection, *, now: datetime) -> tuple[int, datetime | None]:
    """How many queued items are due, and the due time of the oldest (None when none is), for readiness."""
    row = conn.execute(
        select(func.count(), func.min(work_items.c.run_at)).where(
            work_items.c.status == "queued", work_items.c.run_at <= now
        )
    ).one()
    return int(row[0]), row[1]
