"""The home page, the logs page (volume, failed authentications, new keys, keys at new addresses, alerts) and
the audit log."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from postroom.audit import service as audit
from postroom.core.clock import utcnow
from postroom.dashboard import monitoring
from postroom.dashboard.policy import Role
from postroom.dashboard.routes.common import db_of
from postroom.dashboard.web import render, signed_in

AUDIT_PAGE_SIZE = 100


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


@get("/audit", include_in_schema=False)
async def audit_log(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    before_text = request.query_params.get("before")
    before = int(before_text) if before_text and before_text.isdigit() else None
    action = (request.query_params.get("action") or "").strip()[:64] or None
    entries = await db_of(request).read(
        lambda conn: audit.list_entries(
            conn, team_id=session.team_id, limit=AUDIT_PAGE_SIZE, before_id=before, action_prefix=action
        )
    )
    older = entries[-1].id if len(entries) == AUDIT_PAGE_SIZE else None
    return render(request, "audit.html", entries=entries, older=older, action=action or "")


HANDLERS = [home, logs, audit_log]
