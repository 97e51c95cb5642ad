"""The dashboard's plumbing: rendering, the guard every page passes, error pages, security headers.

Every dashboard request passes ``dashboard_guard``, in this order:

1. plain HTTP only from loopback (see ``postroom.auth.sessions``), otherwise a page asking for HTTPS;
2. the session from the cookie (one indexed query: session, user, membership, team setting);
3. for every POST: refused if the browser marks it cross-site (``Sec-Fetch-Site``/``Origin``), then the CSRF token
   (form field ``_csrf`` or header ``X-CSRF-Token``, an HMAC bound to the session or the pre-session cookie);
4. the page's requirement from ``PAGE_ACCESS``: sign-in stage, then role. A refusal is a 403 and an audit event.

Templates are Jinja2 with autoescaping on; pages carry a strict Content-Security-Policy (scripts and styles only
from ``/static``), so nothing a user typed can run in another user's browser.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from litestar import MediaType, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect

from postroom.audit import service as audit
from postroom.auth import sessions as rules
from postroom.auth.client_ip import connection_client_ip
from postroom.core.clock import utcnow
from postroom.core.netaddr import ip_in, parse_ip
from postroom.dashboard import accounts
from postroom.dashboard.accounts import Actor, SessionView
from postroom.dashboard.policy import Role, Stage, permits
from postroom.db.errors import database_unavailable
from postroom.errors import DatabaseUnavailable, PostroomError, ValidationFailed

log = logging.getLogger("postroom.dashboard")

PACKAGE_DIR = Path(__file__).parent
STATIC_DIR = PACKAGE_DIR / "static"
TEMPLATES_DIR = PACKAGE_DIR / "templates"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _format_time(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["time"] = _format_time


# -- per-request context --------------------------------------------------------------------------------------


@dataclass
class PageState:
    """What the guard learnt about a request, for the handler and the templates."""

    secure: bool
    client_ip: str | None
    session: SessionView | None
    csrf_binding: str | None
    new_presession: str | None = None
    notices: list[str] = field(default_factory=list)


def page_state(request: Request[Any, Any, Any]) -> PageState:
    state: PageState = request.state.page
    return state


def signed_in(request: Request[Any, Any, Any]) -> SessionView:
    """The request's session; the guard has already refused requests without one where a page needs it."""
    session = page_state(request).session
    assert session is not None
    return session


def actor(request: Request[Any, Any, Any]) -> Actor:
    state = page_state(request)
    name = state.session.email if state.session else "anonymous"
    return Actor.member(name, ip=state.client_ip, user_agent=request.headers.get("user-agent"))


async def form_data(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form as single values (the last one wins for repeated names)."""
    form = await request.form()
    return {key: str(value) for key, value in form.items() if isinstance(value, str)}


def csrf_token(request: Request[Any, Any, Any]) -> str:
    binding = page_state(request).csrf_binding
    return rules.csrf_token(request.app.state.settings.server_secret, binding) if binding else ""


def safe_next(target: str | None, default: str = "/") -> str:
    """A same-site path to go to after sign-in; anything else (``//evil``, ``https://…``) becomes ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# -- responses ------------------------------------------------------------------------------------------------


def _cookie(spec: rules.CookieSpec) -> Cookie:
    return Cookie(
        key=spec.name,
        value=spec.value,
        path="/",
        max_age=spec.max_age,
        secure=spec.secure,
        httponly=True,
        samesite=spec.same_site,  # type: ignore[arg-type]
    )


def security_headers(secure: bool, *, cacheable: bool = False) -> dict[str, str]:
    headers = {
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send "Origin: null" on our own forms
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if not cacheable:
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return headers


def _finish(request: Request[Any, Any, Any], response: Response[Any], cookies: list[rules.CookieSpec]) -> Response[Any]:
    state: PageState | None = getattr(request.state, "page", None)
    secure = state.secure if state else False
    for name, value in security_headers(secure).items():
        response.headers[name] = value
    if state is not None and state.new_presession:
        cookies = [rules.presession_cookie(state.new_presession, secure=secure), *cookies]
    for spec in cookies:
        response.set_cookie(_cookie(spec))
    return response


def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    cookies: list[rules.CookieSpec] | None = None,
    navigation: bool = True,
    **context: Any,
) -> Response[Any]:
    """A page from ``templates/``, with the signed-in member, the CSRF token and the navigation.

    ``navigation=False`` leaves the member's header out: for a page answered while the session is being replaced
    (its forms would carry the old session's CSRF token).
    """
    state: PageState | None = getattr(request.state, "page", None)
    session = state.session if state else None
    full = navigation and session is not None and session.stage == "full"
    html = _env.get_template(template).render(
        session=session if full else None,
        signed_in=full,
        csrf=csrf_token(request) if state else "",
        path=request.url.path,
        role=session.role if full and session else None,
        Role=Role,
        notice=_NOTICES.get(request.query_params.get("notice") or "", ""),
        **context,
    )
    return _finish(request, Response(content=html, status_code=status, media_type=MediaType.HTML), cookies or [])


def redirect(
    request: Request[Any, Any, Any],
    path: str,
    *,
    notice: str | None = None,
    cookies: list[rules.CookieSpec] | None = None,
) -> Response[Any]:
    """303 to ``path`` (a local path), optionally with a fixed notice shown on arrival."""
    target = path if notice is None else f"{path}{'&' if '?' in path else '?'}notice={notice}"
    return _finish(request, Redirect(path=target, status_code=303), cookies or [])


_NOTICES = {
    "key-updated": "The API key was updated. The change applies to its very next request.",
    "key-revoked": "The API key was revoked. Requests made with it are refused from now on.",
    "password-changed": "Your password was changed and your other sessions were signed out.",
    "2fa-disabled": "Two-factor authentication is off.",
    "session-revoked": "The session was signed out.",
    "sessions-revoked": "Your other sessions were signed out.",
    "role-changed": "The member's role was changed.",
    "member-removed": "The member was removed and their sessions ended.",
    "invitation-revoked": "The invitation was revoked.",
    "settings-saved": "The team settings were saved.",
    "domain-added": "The domain was added. Publish its records, then verify it.",
    "domain-checked": "The domain's records were checked.",
    "joined": "Welcome! You are signed in.",
    "template-saved": "The template was saved as a new version.",
    "delivery-replayed": "The delivery was queued to be sent again.",
}


# -- errors ---------------------------------------------------------------------------------------------------


class DashboardRedirect(Exception):
    """Send the browser elsewhere (sign-in, the second-factor step, 2FA set-up)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class PageRefused(Exception):
    """A request the dashboard refuses with a page saying why (403 unless told otherwise)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ReauthRequired(Exception):
    """A sensitive change needs a fresh proof of identity: the page re-posts the same form with it."""

    def __init__(self, fields: Mapping[str, str], message: str | None = None) -> None:
        super().__init__("re-authentication required")
        self.fields = {k: v for k, v in fields.items() if k != rules.CSRF_FIELD and not k.startswith("reauth_")}
        self.message = message


def _error_page(
    request: Request[Any, Any, Any],
    status: int,
    title: str,
    message: str,
    errors: Mapping[str, list[str]] | None = None,
) -> Response[Any]:
    return render(request, "error.html", status=status, title=title, message=message, errors=errors or {})


def handle_redirect(request: Request[Any, Any, Any], exc: DashboardRedirect) -> Response[Any]:
    return redirect(request, exc.path)


def handle_refused(request: Request[Any, Any, Any], exc: PageRefused) -> Response[Any]:
    return _error_page(request, exc.status, "Not allowed" if exc.status == 403 else "Sorry", exc.message)


def handle_reauth(request: Request[Any, Any, Any], exc: ReauthRequired) -> Response[Any]:
    session = page_state(request).session
    return render(
        request,
        "reauth.html",
        status=403,
        action=request.url.path,
        fields=exc.fields,
        message=exc.message,
        totp=bool(session and session.totp_enabled),
    )


def handle_postroom_error(request: Request[Any, Any, Any], exc: PostroomError) -> Response[Any]:
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    title = {
        403: "Not allowed",
        404: "Not found",
        422: "Please check your input",
        429: "Slow down",
        503: "Temporarily unavailable",
    }.get(exc.status, "Something went wrong")
    response = _error_page(request, exc.status, title, exc.message, errors)
    for name, value in exc.headers.items():
        response.headers[name] = value
    return response


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= 500:
        log.error("dashboard error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error_page(request, 500, "Something went wrong", "The page could not be shown. Try again later.")
    if exc.status_code == 404:
        return _error_page(request, 404, "Not found", "There is nothing here.")
    return _error_page(request, exc.status_code, "Bad request", "The request could not be handled.")


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if database_unavailable(exc):
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return handle_postroom_error(request, DatabaseUnavailable())
    log.error("unhandled dashboard error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_page(request, 500, "Something went wrong", "The page could not be shown. Try again later.")


EXCEPTION_HANDLERS: Mapping[Any, Any] = {
    DashboardRedirect: handle_redirect,
    PageRefused: handle_refused,
    ReauthRequired: handle_reauth,
    PostroomError: handle_postroom_error,
    HTTPException: handle_http_error,
    Exception: handle_unexpected,
}


# -- the guard ------------------------------------------------------------------------------------------------


def _expected_origin(connection: ASGIConnection[Any, Any, Any, Any], secure: bool) -> str:
    host = connection.headers.get("host") or ""
    return f"{'https' if secure else 'http'}://{host}"


def _is_secure(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    peer = connection.scope.get("client")
    trusted = connection.app.state.settings.trusted_proxies
    peer_ip = parse_ip(peer[0]) if peer else None
    return rules.is_secure_request(
        scheme=connection.url.scheme,
        peer_is_trusted_proxy=bool(peer_ip is not None and trusted and ip_in(peer_ip, trusted)),
        forwarded_proto=connection.headers.get("x-forwarded-proto"),
    )


_PRESESSION_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


async def dashboard_guard(connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler) -> None:
    """Decide whether the request may reach its page (see the module docstring for the order)."""
    access = route_handler.opt.get("access")
    if not isinstance(access, Role | Stage):
        raise PageRefused("This page is not available.")  # deny by default: no entry in PAGE_ACCESS
    settings = connection.app.state.settings
    secure = _is_secure(connection)
    client = connection_client_ip(connection)
    state = PageState(secure=secure, client_ip=None if client is None else str(client), session=None, csrf_binding=None)
    connection.state.page = state
    if route_handler.opt.get("static"):
        return
    if not secure and not rules.plain_http_allowed(client):
        raise PageRefused("The dashboard must be opened over HTTPS (plain HTTP is accepted only from this machine).")

    now = utcnow()
    token = connection.cookies.get(rules.session_cookie_name(secure=secure))
    if token:
        db = connection.app.state.db
        state.session = await db.read(lambda conn: accounts.session_for_token(conn, token=token, now=now))
        session = state.session
        if session is not None and now - session.last_seen_at >= rules.LAST_SEEN_RESOLUTION:
            db.write_soon(lambda conn: accounts.touch_session(conn, session_id=session.id, now=now))

    if access is Stage.PUBLIC:
        nonce = connection.cookies.get(rules.presession_cookie_name(secure=secure))
        if nonce is None or not _PRESESSION_SHAPE.fullmatch(nonce):
            nonce = secrets.token_urlsafe(32)
            state.new_presession = nonce
        state.csrf_binding = nonce
    elif state.session is not None:
        state.csrf_binding = state.session.token_digest

    method = connection.scope.get("method", "GET")
    if method not in _SAFE_METHODS:
        await _check_csrf(connection, state, settings.server_secret, secure)

    if access is Stage.PUBLIC:
        return
    session = state.session
    if session is None:
        if method in _SAFE_METHODS:
            path = connection.url.path
            query = connection.url.query
            raise DashboardRedirect("/login" + ("" if path == "/" else f"?next={path}{'?' + query if query else ''}"))
        raise PageRefused("Your session has ended. Sign in again.", status=401)
    stage = session.stage
    if stage == "full" and session.team_requires_2fa and not session.totp_enabled:
        stage = "enrol"
    if access is Stage.MFA:
        return
    if stage == "mfa":
        raise DashboardRedirect("/login/2fa")
    if access is Stage.ENROL:
        return
    if stage == "enrol":
        raise DashboardRedirect("/account/2fa")
    assert isinstance(access, Role)
    if not permits(session.role, access):
        await _record_denial(connection, session, state, f"needs {access.value}")
        raise PageRefused(f"This page needs the {access.label} role or higher; you are {session.role.label}.")


async def _check_csrf(
    connection: ASGIConnection[Any, Any, Any, Any], state: PageState, root: bytes, secure: bool
) -> None:
    refusal = rules.cross_site_refusal(
        method=str(connection.scope.get("method", "GET")),
        origin=connection.headers.get("origin"),
        sec_fetch_site=connection.headers.get("sec-fetch-site"),
        expected_origin=_expected_origin(connection, secure),
    )
    presented = connection.headers.get(rules.CSRF_HEADER)
    if refusal is None and presented is None and isinstance(connection, Request):
        content_type = connection.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await connection.form()
            value = form.get(rules.CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if refusal is None and not rules.csrf_token_valid(root, state.csrf_binding, presented):
        refusal = "missing or wrong CSRF token"
    if refusal is not None:
        log.warning("dashboard request refused as cross-site", extra={"reason": refusal, "ip": state.client_ip})
        if state.session is not None:
            await _record_denial(connection, state.session, state, f"CSRF: {refusal}")
        raise PageRefused("This form has expired or did not come from this dashboard. Reload the page and try again.")


async def _record_denial(
    connection: ASGIConnection[Any, Any, Any, Any], session: SessionView, state: PageState, why: str
) -> None:
    """Refused requests are audit events too (ASVS 16.3.2): a viewer probing key management shows up."""
    now = utcnow()
    target = f"{connection.scope.get('method', 'GET')} {connection.url.path}"
    user_agent = connection.headers.get("user-agent")
    await connection.app.state.db.write(
        lambda conn: audit.record(
            conn,
            team_id=session.team_id,
            actor=session.email,
            action="access.denied",
            target=target,
            new={"reason": why, "role": session.role.value},
            ip=state.client_ip,
            now=now,
            user_agent=user_agent,
        )
    )
