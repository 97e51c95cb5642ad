"""``GET /api/projects``."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.datastructures import State
from litestar.params import FromQuery

from postroom.apikeys.guard import CallerKey
from postroom.core.envelope import envelope
from postroom.core.openapi import documented, envelope_of
from postroom.core.pagination import pagination_body, parse_page_params
from postroom.teams import schemas
from postroom.teams import service as teams_service
from postroom.teams.schemas import project_body


@get("/projects", responses=documented(200, envelope_of(schemas.ProjectList, "ProjectListResponse"), errors=(422,)))
async def list_projects(
    state: State, api_key: CallerKey, page: FromQuery[str | None] = None, per_page: FromQuery[str | None] = None
) -> dict[str, Any]:
    request = parse_page_params(page, per_page)
    projects, total = await state.db.read(
        lambda conn: teams_service.list_projects(conn, team_id=api_key.team_id, page=request)
    )
    return envelope(
        "Projects retrieved successfully.",
        {"projects": [project_body(p) for p in projects], "pagination": pagination_body(total, request)},
    )
