"""Every SQL statement about sending domains. Tenant-scoped functions take the team first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update

from postroom.db.direct import Prepared
from postroom.models import domain_events, domains, work_items

_IN_TEAM = (domains.c.team_id == bindparam("team_id"), domains.c.domain == bindparam("name"))
_DOMAIN_IN_TEAM = Prepared(select(domains).where(*_IN_TEAM))  # every delivery asks
_STATUS_IN_TEAM = Prepared(select(domains.c.status).where(*_IN_TEAM))  # every send asks, and needs no more


def domain_in_team(conn: Connection, team_id: int, name: str) -> Row[Any] | None:
    return _DOMAIN_IN_TEAM.execute(conn, {"team_id": team_id, "name": name}).first()  # type: ignore[no-any-return]


def domain_status_in_team(conn: Connection, team_id: int, name: str) -> str | None:
    return _STATUS_IN_TEAM.execute(conn, {"team_id": team_id, "name": name}).scalar()  # type: ignore[no-any-return]


def team_approved_for(conn: Connection, name: str, *, other_than: int) -> int | None:
    """The team other than ``other_than`` for which ``name`` is approved, if any (at most one can be).

    Only for deciding whether ``other_than`` may be approved; never shown to ``other_than``.
    """
    query = select(domains.c.team_id).where(
        domains.c.domain == name, domains.c.status == "approved", domains.c.team_id != other_than
    )
    return conn.execute(query).scalar()


def domains_in_team(conn: Connection, team_id: int | None) -> Sequence[Row[Any]]:
    query = select(domains).order_by(domains.c.domain)
    if team_id is not None:
        query = query.where(domains.c.team_id == team_id)
    return conn.execute(query).fetchall()


def insert_domain(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(domains.insert(), values)


def update_domain(conn: Connection, domain_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(domains).where(domains.c.id == domain_id).values(**values))


def domain_by_id(conn: Connection, domain_id: str) -> Row[Any] | None:
    return conn.execute(select(domains).where(domains.c.id == domain_id)).first()


def delete_domain(conn: Connection, domain_id: str) -> None:
    conn.execute(delete(domains).where(domains.c.id == domain_id))


def insert_domain_event(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(domain_events.insert(), values)


def events_of_domains(conn: Connection, team_id: int, name: str | None, limit: int) -> Sequence[Row[Any]]:
    query = select(domain_events).where(domain_events.c.team_id == team_id)
    if name is not None:
        query = query.where(domain_events.c.domain == name)
    return conn.execute(query.order_by(domain_events.c.id.desc()).limit(limit)).fetchall()


def domains_without_recheck(conn: Connection, kind: str) -> Sequence[str]:
    """Ids of domains with no pending ``kind`` work item: their chain of periodic checks was never started or
    was lost (e.g. domains registered before checks existed)."""
    pending = select(work_items.c.ref).where(work_items.c.kind == kind, work_items.c.status.in_(("queued", "leased")))
    return conn.execute(select(domains.c.id).where(domains.c.id.not_in(pending))).scalars().all()


def domain_by_tracking_domain(conn: Connection, host: str) -> Row[Any] | None:
    """The domain (of any team) whose tracking domain is ``host``."""
    return conn.execute(select(domains).where(domains.c.tracking_domain == host)).first()
