"""The public tracking endpoints, outside ``/api`` and without an API key: they take only signed tokens.

- ``GET|HEAD /t/o/{token}``: the open pixel, a 1×1 transparent GIF with caching forbidden.
- ``GET|HEAD /t/c/{token}``: a click, answered with ``302`` to the URL the token signed.

A token that does not verify (forged, altered, made for the other endpoint) gets a plain-text ``404``, never a
redirect: the target of a redirect is only ever a URL this server signed. Each request is counted per client IP
(``POSTROOM_TRACKING_RATE_LIMIT``) before anything is read; over the limit it is ``429`` with ``Retry-After`` and
records nothing. Each recorded request is one unit of work on the recipient's row, committed before the answer,
or written behind it with ``POSTROOM_TRACKING_WRITE_BEHIND=1`` (``recorder.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any, TypeVar

from litestar import Request, Response, Router, route
from litestar.datastructures import State
from litestar.enums import HttpMethod
from litestar.params import FromPath

from postroom.auth.client_ip import connection_client_ip
from postroom.auth.ratelimit import RateLimiter
from postroom.core.clock import utcnow
from postroom.tracking import rewriting, service
from postroom.tracking.recorder import EventRecorder, Unit

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
"""A 1×1 transparent GIF (42 bytes)."""

_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private",
    "Pragma": "no-cache",
    "Expires": "0",
}
_METHODS = [HttpMethod.GET, HttpMethod.HEAD]
T = TypeVar("T")


def _plain(status: int, text: str, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=text.encode(), status_code=status, media_type="text/plain; charset=utf-8",
        headers={**_NO_CACHE, **(headers or {})},
    )  # fmt: skip


async def _admitted(request: Request[Any, Any, State]) -> tuple[service.Client, Response[bytes] | None]:
    """Who is asking, and the 429 to answer instead when that address is over its limit."""
    ip = connection_client_ip(request)
    client = service.Client(request.method, request.headers.get("user-agent"), None if ip is None else str(ip))
    limiter: RateLimiter = request.app.state.rate_limiter
    verdict = await limiter.hit_public(client.ip or "unknown")
    if verdict is not None and verdict.retry_after is not None:
        return client, _plain(429, "Too many requests.\n", {"Retry-After": str(verdict.retry_after)})
    return client, None


async def _tracked(
    request: Request[Any, Any, State],
    token: str,
    read: Callable[[bytes, str], T | None],
    unit: Callable[[T, service.Client], Unit],
    not_found: str,
) -> T | Response[bytes]:
    """The token's payload once the request is admitted and its event recorded; else the answer to give."""
    client, refused = await _admitted(request)
    if refused is not None:
        return refused
    state: State = request.app.state
    found = read(state.settings.server_secret, token)
    if found is None:
        return _plain(404, not_found)
    recorder: EventRecorder = state.tracking_recorder
    await recorder.record(unit(found, client))
    return found


@route("/o/{token:str}", http_method=_METHODS, name="tracking-open")
async def open_pixel(request: Request[Any, Any, State], token: FromPath[str]) -> Response[bytes]:
    def unit(recipient_id: int, client: service.Client) -> Unit:
        now = utcnow()
        return lambda conn: service.record_open(conn, recipient_id=recipient_id, client=client, now=now)

    found = await _tracked(request, token, rewriting.read_open, unit, "Not found.\n")
    if isinstance(found, Response):
        return found
    return Response(content=PIXEL, media_type="image/gif", headers=_NO_CACHE)


@route("/c/{token:str}", http_method=_METHODS, name="tracking-click")
async def click(request: Request[Any, Any, State], token: FromPath[str]) -> Response[bytes]:
    def unit(found: tuple[int, str], client: service.Client) -> Unit:
        now = utcnow()
        recipient_id, target = found
        return lambda conn: service.record_click(conn, recipient_id=recipient_id, target=target, client=client, now=now)

    found = await _tracked(request, token, rewriting.read_click, unit, "This link is not valid.\n")
    if isinstance(found, Response):
        return found
    headers = {**_NO_CACHE, "Location": found[1], "Referrer-Policy": "no-referrer"}
    return Response(content=b"", status_code=302, headers=headers)


def router() -> Router:
    """The tracking endpoints, mounted at ``/t`` next to ``/api`` and the dashboard."""
    return Router(path="/t", route_handlers=[open_pixel, click], include_in_schema=False)
