"""Teams and projects. Every installation has a default team with a default project from its first start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from postroom.core.pagination import PageRequest
from postroom.errors import TemplateNotFound, ValidationFailed
from postroom.teams import queries

DEFAULT_TEAM_NAME = "Default team"
DEFAULT_PROJECT_NAME = "Default project"


@dataclass(frozen=True, slots=True)
class Project:
    id: int
    team_id: int
    name: str
    emoji: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime


def resolve_team(conn: Connection, *, team_id: int | None) -> int:
    """The team an operator command acts on: the one named, or the default team."""
    if team_id is None:
        default = queries.first_team_id(conn)
        if default is None:
            raise ValidationFailed({"team": ["No team exists yet; start Postroom once to create the default team."]})
        return default
    if not queries.team_exists(conn, team_id):
        raise ValidationFailed({"team": [f"No team with id {team_id}."]})
    return team_id


def list_projects(conn: Connection, *, team_id: int, page: PageRequest) -> tuple[list[Project], int]:
    """One page of the team's projects and the team's total."""
    rows = queries.projects_page(conn, team_id, offset=page.offset, limit=page.per_page)
    total = queries.count_projects(conn, team_id)
    return [
        Project(
            id=row.id,
            team_id=row.team_id,
            name=row.name,
            emoji=row.emoji,
            is_default=bool(row.is_default),
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
        for row in rows
    ], total


def project_for_send(conn: Connection, *, team_id: int, project_id: int | None) -> int:
    """The project a send belongs to: the one named (if the team has it) or the team's default project."""
    if project_id is not None:
        if not queries.project_in_team(conn, team_id, project_id):
            raise TemplateNotFound(f"Project with ID '{project_id}' was not found or you don't have access to it.")
        return project_id
    default = queries.default_project_id(conn, team_id)
    if default is None:
        raise TemplateNotFound("No default project is configured for this team.")
    return default
