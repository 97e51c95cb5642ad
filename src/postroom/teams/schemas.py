"""Wire shapes for projects (lettr-api.md §5.3 (19))."""

from __future__ import annotations

from typing import Any

from postroom.core.clock import iso_resource
from postroom.teams.service import Project


def project_body(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "emoji": project.emoji,
        "team_id": project.team_id,
        "created_at": iso_resource(project.created_at),
        "updated_at": iso_resource(project.updated_at),
    }
