"""Every SQL statement about teams and projects. Tenant-scoped functions take the team first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select

from postroom.db.direct import Prepared
from postroom.models import projects, teams


def first_team_id(conn: Connection) -> int | None:
    return conn.execute(select(teams.c.id).order_by(teams.c.id).limit(1)).scalar()


def team_exists(conn: Connection, team_id: int) -> bool:
    return conn.execute(select(teams.c.id).where(teams.c.id == team_id)).first() is not None


def insert_team(conn: Connection, name: str, now: datetime) -> int:
    result = conn.execute(teams.insert().values(name=name, created_at=now, updated_at=now).returning(teams.c.id))
    return int(result.scalar_one())


def insert_project(conn: Connection, team_id: int, name: str, *, is_default: bool, now: datetime) -> int:
    result = conn.execute(
        projects.insert()
        .values(team_id=team_id, name=name, emoji=None, is_default=is_default, created_at=now, updated_at=now)
        .returning(projects.c.id)
    )
    return int(result.scalar_one())


def count_projects(conn: Connection, team_id: int) -> int:
    return int(
        conn.execute(select(func.count()).select_from(projects).where(projects.c.team_id == team_id)).scalar_one()
    )


def projects_page(conn: Connection, team_id: int, *, offset: int, limit: int) -> Sequence[Row[Any]]:
    return conn.execute(
        select(projects).where(projects.c.team_id == team_id).order_by(projects.c.id).offset(offset).limit(limit)
    ).fetchall()


_DEFAULT_PROJECT = Prepared(
    select(projects.c.id)
    .where(projects.c.team_id == bindparam("team_id"), projects.c.is_default.is_(True))
    .order_by(projects.c.id)
    .limit(1)
)  # every send asks


def default_project_id(conn: Connection, team_id: int) -> int | None:
    found = _DEFAULT_PROJECT.execute(conn, {"team_id": team_id}).scalar()
    return None if found is None else int(found)


def project_in_team(conn: Connection, team_id: int, project_id: int) -> bool:
    found = conn.execute(select(projects.c.id).where(projects.c.team_id == team_id, projects.c.id == project_id))
    return found.first() is not None
