"""Every SQL statement about folders, templates and template versions. Each function takes the team first, then
the project: a template is only ever found inside the project the caller resolved for its own team."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select, update

from postroom.models import folders, projects, template_versions, templates

# -- folders --------------------------------------------------------------------------------------------------


def insert_folder(
    conn: Connection, team_id: int, project_id: int, *, name: str, purpose: str, is_default: bool, now: datetime
) -> int:
    result = conn.execute(
        folders.insert()
        .values(
            team_id=team_id,
            project_id=project_id,
            name=name,
            purpose=purpose,
            is_default=is_default,
            created_at=now,
            updated_at=now,
        )
        .returning(folders.c.id)
    )
    return int(result.scalar_one())


def folder_in_project(conn: Connection, team_id: int, project_id: int, folder_id: int) -> Row[Any] | None:
    return conn.execute(
        select(folders).where(
            folders.c.team_id == team_id, folders.c.project_id == project_id, folders.c.id == folder_id
        )
    ).first()


def first_folder(conn: Connection, team_id: int, project_id: int, purpose: str | None) -> Row[Any] | None:
    """The folder a template lands in when none is named: the project's first one (of the purpose, if given)."""
    query = select(folders).where(folders.c.team_id == team_id, folders.c.project_id == project_id)
    if purpose is not None:
        query = query.where(folders.c.purpose == purpose)
    return conn.execute(query.order_by(folders.c.is_default.desc(), folders.c.id).limit(1)).first()


def count_folders(conn: Connection, team_id: int, project_id: int, purpose: str | None) -> int:
    query = select(func.count()).select_from(folders).where(folders.c.team_id == team_id)
    query = query.where(folders.c.project_id == project_id)
    if purpose is not None:
        query = query.where(folders.c.purpose == purpose)
    return int(conn.execute(query).scalar_one())


def folders_page(
    conn: Connection, team_id: int, project_id: int, purpose: str | None, *, offset: int, limit: int
) -> Sequence[Row[Any]]:
    """Folders with ``templates_count``."""
    counts = (
        select(templates.c.folder_id, func.count().label("templates_count"))
        .where(templates.c.team_id == team_id, templates.c.project_id == project_id)
        .group_by(templates.c.folder_id)
        .subquery()
    )
    query = (
        select(folders, func.coalesce(counts.c.templates_count, 0).label("templates_count"))
        .select_from(folders.outerjoin(counts, counts.c.folder_id == folders.c.id))
        .where(folders.c.team_id == team_id, folders.c.project_id == project_id)
    )
    if purpose is not None:
        query = query.where(folders.c.purpose == purpose)
    return conn.execute(query.order_by(folders.c.id).offset(offset).limit(limit)).fetchall()


# -- templates ------------------------------------------------------------------------------------------------


def lock_project(conn: Connection, team_id: int, project_id: int) -> None:
    """Serialise template creation within a project (PostgreSQL row lock; SQLite writers are serial already), so
    two concurrent creates cannot pick the same free slug."""
    conn.execute(
        select(projects.c.id).where(projects.c.team_id == team_id, projects.c.id == project_id).with_for_update()
    )


def slugs_like(conn: Connection, team_id: int, project_id: int, base: str) -> set[str]:
    """The project's slugs equal to ``base`` or starting with ``base-`` (the candidates a new slug must avoid)."""
    escaped = base.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = conn.execute(
        select(templates.c.slug).where(
            templates.c.team_id == team_id,
            templates.c.project_id == project_id,
            (templates.c.slug == base) | templates.c.slug.like(f"{escaped}-%", escape="\\"),
        )
    ).scalars()
    return set(rows)


def insert_template(conn: Connection, values: dict[str, Any]) -> int:
    return int(conn.execute(templates.insert().values(**values).returning(templates.c.id)).scalar_one())


def template_by_slug(conn: Connection, team_id: int, project_id: int, slug: str) -> Row[Any] | None:
    return conn.execute(
        select(templates).where(
            templates.c.team_id == team_id, templates.c.project_id == project_id, templates.c.slug == slug
        )
    ).first()


def update_template(conn: Connection, team_id: int, template_id: int, values: dict[str, Any]) -> None:
    conn.execute(
        update(templates).where(templates.c.team_id == team_id, templates.c.id == template_id).values(**values)
    )


def delete_template(conn: Connection, team_id: int, template_id: int) -> None:
    conn.execute(
        delete(template_versions).where(
            template_versions.c.team_id == team_id, template_versions.c.template_id == template_id
        )
    )
    conn.execute(delete(templates).where(templates.c.team_id == team_id, templates.c.id == template_id))


def count_templates(
    conn: Connection, team_id: int, project_id: int, *, folder_id: int | None, purpose: str | None
) -> int:
    query = select(func.count()).select_from(templates)
    query = query.where(*_template_filters(team_id, project_id, folder_id, purpose))
    return int(conn.execute(query).scalar_one())


def templates_page(
    conn: Connection,
    team_id: int,
    project_id: int,
    *,
    folder_id: int | None,
    purpose: str | None,
    offset: int,
    limit: int,
) -> Sequence[Row[Any]]:
    """Templates with ``has_html``: whether their active version has HTML to send."""
    active = template_versions.alias("active")
    query = (
        select(templates, active.c.html.is_not(None).label("has_html"))
        .select_from(
            templates.outerjoin(
                active,
                (active.c.template_id == templates.c.id) & (active.c.version == templates.c.active_version),
            )
        )
        .where(*_template_filters(team_id, project_id, folder_id, purpose))
    )
    return conn.execute(query.order_by(templates.c.id).offset(offset).limit(limit)).fetchall()


def _template_filters(team_id: int, project_id: int, folder_id: int | None, purpose: str | None) -> list[Any]:
    filters: list[Any] = [templates.c.team_id == team_id, templates.c.project_id == project_id]
    if folder_id is not None:
        filters.append(templates.c.folder_id == folder_id)
    if purpose is not None:
        filters.append(templates.c.purpose == purpose)
    return filters


# -- versions -------------------------------------------------------------------------------------------------


def insert_version(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(template_versions.insert().values(**values))


def version_of(conn: Connection, team_id: int, template_id: int, version: int) -> Row[Any] | None:
    return conn.execute(
        select(template_versions).where(
            template_versions.c.team_id == team_id,
            template_versions.c.template_id == template_id,
            template_versions.c.version == version,
        )
    ).first()


def version_stats(conn: Connection, team_id: int, template_id: int) -> tuple[int, int]:
    """(how many versions, the highest version number) of one template."""
    row = conn.execute(
        select(func.count(), func.coalesce(func.max(template_versions.c.version), 0)).where(
            template_versions.c.team_id == team_id, template_versions.c.template_id == template_id
        )
    ).one()
    return int(row[0]), int(row[1])
