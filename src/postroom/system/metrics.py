"""``GET /metrics`` for Prometheus, open only to ``POSTROOM_METRICS_ALLOWED_IPS`` (this machine by default)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from postroom.auth.client_ip import connection_client_ip
from postroom.core.netaddr import ip_allowed
from postroom.errors import IpNotAllowed


@get("/metrics", sync_to_thread=False, include_in_schema=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    ip = connection_client_ip(request)
    if ip is None or not ip_allowed(ip, request.app.state.settings.metrics_allowed_ips):
        raise IpNotAllowed()
    # Litestar appends the charset to text/* types itself.
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST.split("; charset")[0])
