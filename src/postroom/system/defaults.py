"""What an empty installation starts with: the default team, its default project and that project's folders."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from postroom.teams import queries as team_queries
from postroom.teams.service import DEFAULT_PROJECT_NAME, DEFAULT_TEAM_NAME
from postroom.templates import service as templates_service


def ensure_default_team(conn: Connection, *, now: datetime) -> int:
    """Create the default team and project on an empty installation; return the default team's id."""
    team_id = team_queries.first_team_id(conn)
    if team_id is None:
        team_id = team_queries.insert_team(conn, DEFAULT_TEAM_NAME, now)
        project_id = team_queries.insert_project(conn, team_id, DEFAULT_PROJECT_NAME, is_default=True, now=now)
        templates_service.create_default_folders(conn, team_id=team_id, project_id=project_id, now=now)
    return team_id
