"""Templates (list, editor with preview) and webhooks (endpoints, delivery log, replay).

Both packages were being built alongside the dashboard, so these pages call only their service functions
(``list_templates``/``get_template``/``update_template``; ``list_webhooks``/``list_deliveries``/``replay_delivery``)
and keep to the default project. The preview shows the stored HTML in a sandboxed frame (no scripts, its own
origin) under the dashboard's Content-Security-Policy, so inline styles in the template are not applied there and
merge tags are shown as written.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from postroom.core.clock import utcnow
from postroom.core.pagination import PageRequest
from postroom.dashboard.routes.common import db_of
from postroom.dashboard.web import actor, form_data, redirect, render, signed_in
from postroom.errors import ValidationFailed
from postroom.templates import service as templates_service
from postroom.webhooks import service as webhooks_service

PAGE_SIZE = 100


@get("/templates", include_in_schema=False)
async def list_templates(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    page = PageRequest(page=1, per_page=PAGE_SIZE)
    records, total = await db_of(request).read(
        lambda conn: templates_service.list_templates(
            conn, team_id=session.team_id, project_id=None, folder_id=None, purpose=None, page=page
        )
    )
    return render(request, "templates.html", templates=records, total=total)


@get("/templates/{slug:str}", include_in_schema=False)
async def template_page(request: Request[Any, Any, Any], slug: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    record = await db_of(request).read(
        lambda conn: templates_service.get_template(conn, team_id=session.team_id, project_id=None, slug=slug)
    )
    return render(request, "template_edit.html", record=record, errors={})


@post("/templates/{slug:str}", include_in_schema=False)
async def save_template(request: Request[Any, Any, Any], slug: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    who = actor(request)
    now = utcnow()
    html = form.get("html", "")
    subject = form.get("subject", "").strip() or None

    def save(conn: Any) -> None:
        templates_service.update_template(
            conn,
            team_id=session.team_id,
            slug=slug,
            project_id=None,
            name=None,
            html=html,
            json_text=None,
            subject=subject,
            subject_given=True,
            actor=who,
            now=now,
        )

    try:
        await db_of(request).write(save)
    except ValidationFailed as exc:
        record = await db_of(request).read(
            lambda conn: templates_service.get_template(conn, team_id=session.team_id, project_id=None, slug=slug)
        )
        return render(request, "template_edit.html", status=422, record=record, errors=exc.errors)
    return redirect(request, f"/templates/{slug}", notice="template-saved")


@get("/webhooks", include_in_schema=False)
async def list_webhooks(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    db = db_of(request)
    endpoints = await db.read(lambda conn: list(webhooks_service.list_webhooks(conn, team_id=session.team_id)))
    alerts = await db.read(lambda conn: list(webhooks_service.list_alerts(conn, team_id=session.team_id, limit=20)))
    return render(request, "webhooks.html", endpoints=endpoints, alerts=alerts)


@get("/webhooks/{webhook_id:str}", include_in_schema=False)
async def webhook_page(request: Request[Any, Any, Any], webhook_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)

    def load(conn: Any) -> dict[str, Any]:
        endpoint = webhooks_service.get_webhook(conn, team_id=session.team_id, webhook_id=webhook_id)
        batches, attempts, total = webhooks_service.list_deliveries(
            conn, team_id=session.team_id, webhook_id=webhook_id, offset=0, limit=PAGE_SIZE
        )
        return {"endpoint": endpoint, "batches": batches, "attempts": attempts, "total": total}

    return render(request, "webhook_detail.html", **(await db_of(request).read(load)))


@post("/webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/replay", include_in_schema=False)
async def replay_delivery(
    request: Request[Any, Any, Any], webhook_id: FromPath[str], delivery_id: FromPath[str]
) -> Response[Any]:
    session = signed_in(request)
    who = actor(request)
    now = utcnow()

    await db_of(request).write(
        lambda conn: webhooks_service.replay_delivery(
            conn, team_id=session.team_id, webhook_id=webhook_id, delivery_id=delivery_id, actor=who, now=now
        )
    )
    return redirect(request, f"/webhooks/{webhook_id}", notice="delivery-replayed")


HANDLERS = [list_templates, template_page, save_template, list_webhooks, webhook_page, replay_delivery]
