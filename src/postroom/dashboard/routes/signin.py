"""Signing in (password, then the second factor), signing out, and accepting an invitation or setup link.

Every step issues a new session token (no session fixation): the password step creates a session that can only
reach the code page, and the code step replaces it with a full one. Wrong answers get one generic message, take
the same time whether or not the account exists, and feed the throttle in ``accounts``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from postroom.audit import service as audit
from postroom.auth import sessions as rules
from postroom.auth import totp
from postroom.auth.passwords import hash_password_async, password_problems, verify_password_async
from postroom.core.clock import utcnow
from postroom.dashboard import accounts
from postroom.dashboard.accounts import Actor
from postroom.dashboard.routes.common import check_code, db_of
from postroom.dashboard.web import PageRefused, actor, form_data, page_state, redirect, render, safe_next
from postroom.errors import NotFound

GENERIC_FAILURE = "The email address or password is not correct."


def _session_cookies(request: Request[Any, Any, Any], token: str) -> list[rules.CookieSpec]:
    return [rules.session_cookie(token, secure=page_state(request).secure)]


@get("/login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Response[Any]:
    session = page_state(request).session
    if session is not None and session.stage == "full":
        return redirect(request, "/")
    return render(request, "login.html", email="", error=None, next=safe_next(request.query_params.get("next")))


@post("/login", include_in_schema=False)
async def login(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await form_data(request)
    email = form.get("email", "").strip().lower()[:254]
    password = form.get("password", "")
    target = safe_next(form.get("next"))
    db = db_of(request)
    who = Actor(name=email or "unknown", ip=page_state(request).client_ip, user_agent=request.headers.get("user-agent"))
    now = utcnow()

    def failed(message: str, status: int) -> Response[Any]:
        return render(request, "login.html", status=status, email=email, error=message, next=target)

    wait = await db.read(lambda conn: accounts.sign_in_wait(conn, email=email, ip=who.ip, now=now))
    if wait:
        await db.write(lambda conn: accounts.record_attempt(conn, email=email, ip=who.ip, outcome="throttled", now=now))
        response = failed(accounts.TooManyAttempts(wait).message, 429)
        response.headers["Retry-After"] = str(wait)
        return response
    user = await db.read(lambda conn: accounts.find_user(conn, email=email)) if email else None
    verified = await verify_password_async(user.password_hash if user else None, password)
    if user is None or not verified.ok:
        known = user

        def record_failure(conn: Any) -> None:
            accounts.record_attempt(conn, email=email, ip=who.ip, outcome="failure", now=now)
            team = accounts.first_team(conn, user_id=known.id) if known else None
            audit.record(
                conn,
                team_id=team,
                actor=email or "unknown",
                action="session.sign_in_failed",
                target=f"user:{email}" if known else None,
                new={"reason": "wrong password" if known else "no account"},
                ip=who.ip,
                now=now,
                user_agent=who.user_agent,
            )

        await db.write(record_failure)
        return failed(GENERIC_FAILURE, 401)

    new_hash = await hash_password_async(password) if verified.needs_rehash else None
    signed_user = user
    old = page_state(request).session

    def sign_in(conn: Any) -> tuple[str | None, str]:
        accounts.record_attempt(conn, email=email, ip=who.ip, outcome="success", now=now)
        if new_hash is not None:
            accounts.rehash_password(conn, user_id=signed_user.id, new_hash=new_hash, now=now)
        if old is not None:
            accounts.end_session(conn, session=old, actor=who, now=now, reason="replaced")
        team = accounts.first_team(conn, user_id=signed_user.id)
        if signed_user.totp_enabled:
            stage = "mfa"
        elif team is not None and accounts.team_requires_2fa(conn, team_id=team):
            stage = "enrol"
        else:
            stage = "full"
        token = accounts.start_session(conn, user=signed_user, team_id=team, stage=stage, actor=who, now=now)
        if token is not None and stage != "mfa":
            audit.record(
                conn,
                team_id=team,
                actor=email,
                action="session.signed_in",
                target=f"user:{email}",
                new={"method": "password", "2fa": False},
                ip=who.ip,
                now=now,
                user_agent=who.user_agent,
            )
        return token, stage

    token, stage = await db.write(sign_in)
    if token is None:
        return failed("This account is not a member of any team any more.", 403)
    cookies = _session_cookies(request, token)
    if stage == "mfa":
        return redirect(request, "/login/2fa" + (f"?next={target}" if target != "/" else ""), cookies=cookies)
    if stage == "enrol":
        return redirect(request, "/account/2fa", cookies=cookies)
    return redirect(request, target, cookies=cookies)


@get("/login/2fa", include_in_schema=False)
async def second_factor_page(request: Request[Any, Any, Any]) -> Response[Any]:
    session = page_state(request).session
    assert session is not None
    if session.stage != "mfa":
        return redirect(request, "/")
    return render(request, "login_2fa.html", error=None, next=safe_next(request.query_params.get("next")))


@post("/login/2fa", include_in_schema=False)
async def second_factor(request: Request[Any, Any, Any]) -> Response[Any]:
    session = page_state(request).session
    assert session is not None
    if session.stage != "mfa":
        return redirect(request, "/")
    form = await form_data(request)
    code = form.get("code", "").strip()
    target = safe_next(form.get("next"))
    db = db_of(request)
    who = Actor(name=session.email, ip=page_state(request).client_ip, user_agent=request.headers.get("user-agent"))
    now = utcnow()
    wait = await db.read(lambda conn: accounts.code_entry_wait(conn, email=session.email, now=now))
    if wait:
        return render(request, "login_2fa.html", status=429, error=accounts.TooManyAttempts(wait).message, next=target)
    user = await db.read(lambda conn: accounts.get_user(conn, user_id=session.user_id))
    method = "totp"
    if totp.looks_like_recovery_code(code):
        method = "recovery_code"
        ok = await _use_recovery_code(request, session, code, who)
    else:
        ok = await check_code(request, user, code)
    if not ok:

        def record_failure(conn: Any) -> None:
            accounts.record_attempt(conn, email=session.email, ip=who.ip, outcome="code_failure", now=now)
            audit.record(
                conn,
                team_id=session.team_id,
                actor=session.email,
                action="session.2fa_failed",
                target=f"user:{session.email}",
                new={"method": method},
                ip=who.ip,
                now=now,
                user_agent=who.user_agent,
            )

        await db.write(record_failure)
        return render(
            request, "login_2fa.html", status=401, error="That code is not valid (or was already used).", next=target
        )

    def complete(conn: Any) -> str | None:
        accounts.record_attempt(conn, email=session.email, ip=who.ip, outcome="code_success", now=now)
        accounts.end_session(conn, session=session, actor=who, now=now, reason="promoted")
        token = accounts.start_session(conn, user=user, team_id=session.team_id, stage="full", actor=who, now=now)
        audit.record(
            conn,
            team_id=session.team_id,
            actor=session.email,
            action="session.signed_in",
            target=f"user:{session.email}",
            new={"method": method, "2fa": True},
            ip=who.ip,
            now=now,
            user_agent=who.user_agent,
        )
        return token

    token = await db.write(complete)
    assert token is not None
    return redirect(request, target, cookies=_session_cookies(request, token))


async def _use_recovery_code(
    request: Request[Any, Any, Any], session: accounts.SessionView, code: str, who: Actor
) -> bool:
    """Check the code against each unused recovery code (argon2id, off the event loop) and spend the match."""
    db = db_of(request)
    candidates = await db.read(lambda conn: accounts.unused_recovery_codes(conn, user_id=session.user_id))
    found = None
    for code_id, code_hash in candidates:
        if await asyncio.to_thread(totp.recovery_code_matches, code_hash, code):
            found = code_id
            break
    if found is None:
        return False
    matched, now = found, utcnow()
    return bool(
        await db.write(
            lambda conn: accounts.use_recovery_code(conn, session=session, code_id=matched, actor=who, now=now)
        )
    )


@post("/logout", include_in_schema=False)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    session = page_state(request).session
    if session is not None:
        who = actor(request)
        now = utcnow()
        await db_of(request).write(lambda conn: accounts.end_session(conn, session=session, actor=who, now=now))
    return redirect(request, "/login", cookies=[rules.cleared_session_cookie(secure=page_state(request).secure)])


# -- invitations ----------------------------------------------------------------------------------------------


async def _invitation(request: Request[Any, Any, Any], token: FromPath[str]) -> accounts.Invitation:
    now = utcnow()
    invitation = await db_of(request).read(lambda conn: accounts.open_invitation(conn, token=token, now=now))
    if invitation is None:
        raise PageRefused("This link has expired or was already used. Ask for a new one.", status=404)
    return invitation


@get("/invite/{token:str}", include_in_schema=False)
async def invitation_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[Any]:
    invitation = await _invitation(request, token)
    existing = await db_of(request).read(lambda conn: accounts.find_user(conn, email=invitation.email))
    return render(request, "invite.html", invitation=invitation, existing=existing is not None, errors={})


@post("/invite/{token:str}", include_in_schema=False)
async def accept_invitation(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[Any]:
    invitation = await _invitation(request, token)
    form = await form_data(request)
    db = db_of(request)
    who = Actor(name=invitation.email, ip=page_state(request).client_ip, user_agent=request.headers.get("user-agent"))
    existing = await db.read(lambda conn: accounts.find_user(conn, email=invitation.email))
    password = form.get("password", "")
    new_hash: str | None = None
    if existing is not None:
        if not (await verify_password_async(existing.password_hash, password)).ok:
            now = utcnow()
            await db.write(
                lambda conn: accounts.record_attempt(
                    conn, email=invitation.email, ip=who.ip, outcome="failure", now=now
                )
            )
            errors = {"password": ["That is not the password of this account."]}
            return render(request, "invite.html", status=422, invitation=invitation, existing=True, errors=errors)
    else:
        problems = password_problems(password, email=invitation.email)
        if password != form.get("password_again", ""):
            problems.append("The two passwords are not the same.")
        if problems:
            return render(
                request, "invite.html", status=422, invitation=invitation, existing=False, errors={"password": problems}
            )
        new_hash = await hash_password_async(password)
    existing_id = existing.id if existing else None
    now = utcnow()

    def accept(conn: Any) -> tuple[str | None, str]:
        user = accounts.accept_invitation(
            conn, token=token, new_password_hash=new_hash, existing_user_id=existing_id, actor=who, now=now
        )
        if user.totp_enabled:
            stage = "mfa"
        elif accounts.team_requires_2fa(conn, team_id=invitation.team_id):
            stage = "enrol"
        else:
            stage = "full"
        return accounts.start_session(
            conn, user=user, team_id=invitation.team_id, stage=stage, actor=who, now=now
        ), stage

    try:
        session_token, stage = await db.write(accept)
    except NotFound as exc:
        raise PageRefused(exc.message, status=404) from None
    assert session_token is not None
    cookies = _session_cookies(request, session_token)
    if stage == "mfa":
        return redirect(request, "/login/2fa", cookies=cookies)
    if stage == "enrol":
        return redirect(request, "/account/2fa", cookies=cookies)
    return redirect(request, "/account/2fa", notice="joined", cookies=cookies)


HANDLERS = [login_page, login, second_factor_page, second_factor, logout, invitation_page, accept_invitation]
