"""Wire shapes for projects."""

from __future__ import annotations

from typing import Any

import msgspec

from postroom.core.clock import iso_resource
from postroom.core.openapi import Pagination, Timestamp
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


# -- OpenAPI documentation (postroom.core.openapi) -----------------------------------------------------------------


class ProjectBody(msgspec.Struct):
    id: int
    name: str
    emoji: str | None
    team_id: int
    created_at: Timestamp
    updated_at: Timestamp


class ProjectList(msgspec.Struct):
    projects: list[ProjectBody]
    pagination: Pagination
