"""``GET /metrics`` for Prometheus, open only to ``POSTROOM_METRICS_ALLOWED_IPS`` (this machine by default)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from postroom.auth.client_ip import connection_client_ip
from postroom.core.netaddr import ip_allowed
from postroom.errors import IpNotAllowed
from postroom.jobs.report import report as dispatcher_report
from postroom.observability.metrics import record_dispatcher


@get("/metrics", include_in_schema=False)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    ip = connection_client_ip(request)
    if ip is None or not ip_allowed(ip, request.app.state.settings.metrics_allowed_ips):
        raise IpNotAllowed()
    dispatcher = request.app.state.get("dispatcher")
    if dispatcher is not None:
        report = await dispatcher_report(request.app.state.db, dispatcher)
        record_dispatcher(
            connected=report.connected,
            last_claim=report.last_claim_at.timestamp() if report.last_claim_at else None,
            backlog=report.backlog,
            oldest_due_age=report.oldest_due_age_seconds,
        )
    registry = REGISTRY
    metrics_dir = request.app.state.metrics_dir
    if metrics_dir is not None:  # one of several API processes: report what all of them counted
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
    # Litestar appends the charset to text/* types itself.
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST.split("; charset")[0])
