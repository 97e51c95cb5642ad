"""The home page, the logs page (volume, failed authentications, new keys, keys at new addresses, alerts) and
the audit log."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response, get

from postroom.audit import service as audit
from postroom.core.clock import utcnow
from postroom.dashboard import monitoring
from postroom.dashboard.policy import Role
from postroom.dashboard.routes.common import db_of
from postroom.dashboard.web import render, signed_in
from postroom.errors import ValidationFailed

AUDIT_PAGE_SIZE = 100
AUDIT_EXPORT_LIMIT = 100_000
AUDIT_COLUMNS = (
    "id", "occurred_at", "actor", "actor_ip", "user_agent", "action", "target", "old_value", "new_value",
)  # fmt: skip


@get("/", include_in_schema=False)
async def home(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    now = utcnow()
    db = db_of(request)
    alerts = await db.read(lambda conn: monitoring.alerts(conn, team_id=session.team_id, now=now))
    points = await db.read(lambda conn: monitoring.volume(conn, team_id=session.team_id, now=now, hours=24))
    return render(
        request, "home.html", alerts=alerts, chart=monitoring.chart_svg(points), sent_today=sum(p.count for p in points)
    )


@get("/logs", include_in_schema=False)
async def logs(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    now = utcnow()
    db = db_of(request)
    admin = session.role.at_least(Role.ADMIN)

    def gather(conn: Any) -> dict[str, Any]:
        points = monitoring.volume(conn, team_id=session.team_id, now=now)
        return {
            "alerts": monitoring.alerts(conn, team_id=session.team_id, now=now),
            "chart": monitoring.chart_svg(points),
            "total": sum(p.count for p in points),
            "failures": monitoring.failed_authentications(conn, team_id=session.team_id, include_unattributed=admin),
            "new_keys": monitoring.new_keys(conn, team_id=session.team_id, now=now),
            "sightings": monitoring.keys_at_new_addresses(conn, team_id=session.team_id, now=now),
        }

    return render(request, "logs.html", unattributed=admin, **(await db.read(gather)))


def _audit_filters(request: Request[Any, Any, Any]) -> tuple[str | None, str | None]:
    """The audit page's filters (action prefix, actor substring), as the page and its exports read them."""
    action = (request.query_params.get("action") or "").strip()[:64] or None
    actor_text = (request.query_params.get("actor") or "").strip()[:255] or None
    return action, actor_text


@get("/audit", include_in_schema=False)
async def audit_log(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    before_text = request.query_params.get("before")
    before = int(before_text) if before_text and before_text.isdigit() else None
    action, actor_text = _audit_filters(request)
    entries = await db_of(request).read(
        lambda conn: audit.list_entries(
            conn,
            team_id=session.team_id,
            limit=AUDIT_PAGE_SIZE,
            before_id=before,
            action_prefix=action,
            actor_contains=actor_text,
        )
    )
    older = entries[-1].id if len(entries) == AUDIT_PAGE_SIZE else None
    filters = urlencode({k: v for k, v in (("action", action), ("actor", actor_text)) if v})
    return render(
        request,
        "audit.html",
        entries=entries,
        older=older,
        action=action or "",
        actor=actor_text or "",
        filters=filters,
    )


def _csv_cell(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula (``=``, ``+``, ``-``, ``@`` and tab/CR lead-ins quoted)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@get("/audit/export", include_in_schema=False)
async def audit_export(request: Request[Any, Any, Any]) -> Response[Any]:
    """Every entry the page's filters match (newest first, up to ``AUDIT_EXPORT_LIMIT``), as CSV or JSON."""
    session = signed_in(request)
    fmt = request.query_params.get("format", "csv")
    if fmt not in ("csv", "json"):
        raise ValidationFailed({"format": ["Choose csv or json."]})
    action, actor_text = _audit_filters(request)
    entries = await db_of(request).read(
        lambda conn: audit.list_entries(
            conn, team_id=session.team_id, limit=AUDIT_EXPORT_LIMIT, action_prefix=action, actor_contains=actor_text
        )
    )
    rows = [audit.entry_json(entry) for entry in entries]
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "Content-Disposition": f'attachment; filename="postroom-audit-{stamp}.{fmt}"',
        "Cache-Control": "no-store",
    }
    if fmt == "json":
        return Response(content=json.dumps(rows, indent=2), media_type="application/json", headers=headers)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(row[column]) for column in AUDIT_COLUMNS])
    return Response(content=out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


HANDLERS = [home, logs, audit_log, audit_export]
