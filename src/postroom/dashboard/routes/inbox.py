"""Inbox: what sandbox keys sent, captured as the recipients' servers would have received it.

The message's HTML is served on a route of its own (``/inbox/{id}/html``) with a policy that forbids scripts,
plugins, forms and every remote load, and the page shows it in an ``<iframe sandbox>``: captured HTML is untrusted
content and never runs in the dashboard's origin.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.enums import MediaType
from litestar.params import FromPath

from postroom.dashboard.routes.common import db_of
from postroom.dashboard.web import render, security_headers, signed_in
from postroom.inbox import service as inbox_service

CAPTURED_HTML_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; frame-ancestors 'self'; "
    "form-action 'none'; base-uri 'none'; sandbox"
)
"""Captured HTML may style itself and show inline images; it may not run, submit, navigate or fetch anything."""


@get("/inbox", include_in_schema=False)
async def inbox(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    page_text = request.query_params.get("page") or "1"
    page = int(page_text) if page_text.isdigit() and 0 < int(page_text) < 10**6 else 1
    captures, total = await db_of(request).read(
        lambda conn: inbox_service.list_captures(conn, team_id=session.team_id, page=page)
    )
    return render(
        request,
        "inbox.html",
        captures=captures,
        total=total,
        page=page,
        more=page * inbox_service.PAGE_SIZE < total,
    )


@get("/inbox/{capture_id:str}", include_in_schema=False)
async def captured(request: Request[Any, Any, Any], capture_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    view = await db_of(request).read(
        lambda conn: inbox_service.view_capture(conn, team_id=session.team_id, capture_id=capture_id)
    )
    return render(request, "inbox_message.html", view=view)


@get("/inbox/{capture_id:str}/html", include_in_schema=False)
async def captured_html(request: Request[Any, Any, Any], capture_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    view = await db_of(request).read(
        lambda conn: inbox_service.view_capture(conn, team_id=session.team_id, capture_id=capture_id)
    )
    headers = {
        **security_headers(False),
        "Content-Security-Policy": CAPTURED_HTML_POLICY,
        "X-Frame-Options": "SAMEORIGIN",
    }
    return Response(view.html or "", media_type=MediaType.HTML, headers=headers)


HANDLERS = [inbox, captured, captured_html]
