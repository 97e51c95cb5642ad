"""``/api/templates`` and ``/api/folders``.

``GET /templates/html`` is a static route, so it wins over ``GET /templates/{slug}``; ``html`` is never a slug.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, delete, get, post, put
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery

from postroom.apikeys.guard import CallerKey, caller_actor
from postroom.core.clock import utcnow
from postroom.core.envelope import envelope
from postroom.core.jsonbody import decode_body
from postroom.core.openapi import MessageBody, documented, envelope_of, request_body
from postroom.core.pagination import pagination_body, parse_page_params
from postroom.errors import ValidationFailed
from postroom.templates import schemas
from postroom.templates import service as templates_service


@get(
    "/templates",
    responses=documented(200, envelope_of(schemas.TemplateList, "TemplateListResponse"), errors=(404, 422)),
)
async def list_templates(
    state: State,
    api_key: CallerKey,
    project_id: FromQuery[str | None] = None,
    folder_id: FromQuery[str | None] = None,
    purpose: FromQuery[str | None] = None,
    page: FromQuery[str | None] = None,
    per_page: FromQuery[str | None] = None,
) -> dict[str, Any]:
    request = parse_page_params(page, per_page)
    project = schemas.query_integer("project_id", project_id)
    folder = schemas.query_integer("folder_id", folder_id)
    wanted_purpose = schemas.query_purpose(purpose)
    found, total = await state.db.read(
        lambda conn: templates_service.list_templates(
            conn, team_id=api_key.team_id, project_id=project, folder_id=folder, purpose=wanted_purpose, page=request
        )
    )
    return envelope(
        "Templates retrieved successfully.",
        {"templates": [schemas.template_list_item(t) for t in found], "pagination": pagination_body(total, request)},
    )


@post(
    "/templates",
    status_code=201,
    responses=documented(201, envelope_of(schemas.SavedTemplate, "SavedTemplateResponse"), errors=(404, 413, 422)),
    operation_class=request_body(schemas.CreateTemplateInput),
)
async def create_template(request: Request[Any, Any, State], state: State, api_key: CallerKey) -> dict[str, Any]:
    given = schemas.parse_create(decode_body(await request.body()))
    who = caller_actor(request, api_key)
    created = await state.db.write(
        lambda conn: templates_service.create_template(
            conn,
            team_id=api_key.team_id,
            name=given.name,
            html=given.html,
            json_text=given.json,
            subject=given.subject,
            project_id=given.project_id,
            folder_id=given.folder_id,
            purpose=given.purpose,
            actor=who,
            now=utcnow(),
        )
    )
    return envelope("Template created successfully.", schemas.template_saved(created))


@get(
    "/templates/html",
    responses={
        **documented(200, schemas.TemplateHtmlResponse, errors=(422,)),
        404: ResponseSpec(
            schemas.TemplateHtmlNotFoundBody, description="No such template or active HTML.", generate_examples=False
        ),
    },
)
async def get_template_html(
    state: State,
    api_key: CallerKey,
    project_id: FromQuery[str | None] = None,
    slug: FromQuery[str | None] = None,
) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    if not project_id:
        errors["project_id"] = ["The project_id field is required."]
    if not slug:
        errors["slug"] = ["The slug field is required."]
    if errors:
        raise ValidationFailed(errors)
    project = schemas.query_integer("project_id", project_id)
    assert project is not None and slug is not None  # noqa: S101 - checked above
    version = await state.db.read(
        lambda conn: templates_service.template_html(conn, team_id=api_key.team_id, project_id=project, slug=slug)
    )
    return {
        "success": True,
        "message": "Template HTML retrieved successfully.",
        "data": {
            "html": version.html,
            "merge_tags": [
                {"key": t["key"], "name": t.get("name", t["key"]), "required": bool(t.get("required", False))}
                for t in version.merge_tags
            ],
            "subject": version.subject,
        },
    }


@get(
    "/templates/{slug:str}",
    responses=documented(200, envelope_of(schemas.TemplateDetail, "TemplateDetailResponse"), errors=(404, 422)),
)
async def get_template(
    state: State, api_key: CallerKey, slug: FromPath[str], project_id: FromQuery[str | None] = None
) -> dict[str, Any]:
    project = schemas.query_integer("project_id", project_id)
    found = await state.db.read(
        lambda conn: templates_service.get_template(conn, team_id=api_key.team_id, project_id=project, slug=slug)
    )
    return envelope("Template retrieved successfully.", schemas.template_detail(found))


@put(
    "/templates/{slug:str}",
    responses=documented(200, envelope_of(schemas.SavedTemplate, "SavedTemplateResponse"), errors=(404, 413, 422)),
    operation_class=request_body(schemas.UpdateTemplateInput),
)
async def update_template(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, slug: FromPath[str]
) -> dict[str, Any]:
    changes = schemas.parse_update(decode_body(await request.body()))
    who = caller_actor(request, api_key)
    updated = await state.db.write(
        lambda conn: templates_service.update_template(
            conn,
            team_id=api_key.team_id,
            slug=slug,
            project_id=changes.project_id,
            name=changes.name,
            html=changes.html,
            json_text=changes.json,
            subject=changes.subject,
            subject_given=changes.subject_given,
            actor=who,
            now=utcnow(),
        )
    )
    return envelope("Template updated successfully.", schemas.template_saved(updated))


@delete("/templates/{slug:str}", status_code=200, responses=documented(200, MessageBody, errors=(404, 422)))
async def delete_template(
    request: Request[Any, Any, State],
    state: State,
    api_key: CallerKey,
    slug: FromPath[str],
    project_id: FromQuery[str | None] = None,
) -> dict[str, Any]:
    project = schemas.query_integer("project_id", project_id)
    who = caller_actor(request, api_key)
    await state.db.write(
        lambda conn: templates_service.delete_template(
            conn, team_id=api_key.team_id, project_id=project, slug=slug, actor=who, now=utcnow()
        )
    )
    return {"message": "Template deleted successfully."}


@get(
    "/templates/{slug:str}/merge-tags",
    responses=documented(200, envelope_of(schemas.TemplateMergeTags, "TemplateMergeTagsResponse"), errors=(404, 422)),
)
async def get_merge_tags(
    state: State,
    api_key: CallerKey,
    slug: FromPath[str],
    project_id: FromQuery[str | None] = None,
    version: FromQuery[str | None] = None,
) -> dict[str, Any]:
    project = schemas.query_integer("project_id", project_id)
    number = schemas.query_integer("version", version)
    found = await state.db.read(
        lambda conn: templates_service.merge_tags(
            conn, team_id=api_key.team_id, project_id=project, slug=slug, version=number
        )
    )
    return envelope(
        "Merge tags retrieved successfully.",
        {
            "project_id": found.project_id,
            "template_slug": found.slug,
            "version": found.version,
            "merge_tags": found.merge_tags,
        },
    )


@get("/folders", responses=documented(200, envelope_of(schemas.FolderList, "FolderListResponse"), errors=(404, 422)))
async def list_folders(
    state: State,
    api_key: CallerKey,
    project_id: FromQuery[str | None] = None,
    purpose: FromQuery[str | None] = None,
    page: FromQuery[str | None] = None,
    per_page: FromQuery[str | None] = None,
) -> dict[str, Any]:
    request = parse_page_params(page, per_page)
    project = schemas.query_integer("project_id", project_id)
    wanted_purpose = schemas.query_purpose(purpose)
    found, total = await state.db.read(
        lambda conn: templates_service.list_folders(
            conn, team_id=api_key.team_id, project_id=project, purpose=wanted_purpose, page=request
        )
    )
    return envelope(
        "Folders retrieved successfully.",
        {"folders": [schemas.folder_body(f) for f in found], "pagination": pagination_body(total, request)},
    )


HANDLERS: list[Any] = [
    list_templates,
    create_template,
    get_template_html,
    get_template,
    update_template,
    delete_template,
    get_merge_tags,
    list_folders,
]
