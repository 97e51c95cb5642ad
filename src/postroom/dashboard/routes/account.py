"""The signed-in person's own account: password, two-factor authentication, recovery codes, sessions."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from postroom.auth import sessions as rules
from postroom.auth import totp
from postroom.auth.passwords import hash_password_async, password_problems, verify_password_async
from postroom.core.clock import utcnow
from postroom.dashboard import accounts
from postroom.dashboard.routes.common import db_of, require_fresh, seed_box
from postroom.dashboard.web import PageRefused, actor, form_data, page_state, redirect, render, signed_in


async def _account_page(
    request: Request[Any, Any, Any], *, status: int = 200, password_errors: list[str] | None = None
) -> Response[Any]:
    session = signed_in(request)
    now = utcnow()
    db = db_of(request)
    listing = await db.read(lambda conn: accounts.list_sessions(conn, session=session, now=now))
    codes_left = await db.read(lambda conn: len(accounts.unused_recovery_codes(conn, user_id=session.user_id)))
    return render(
        request,
        "account.html",
        status=status,
        sessions=listing,
        codes_left=codes_left,
        password_errors=password_errors or [],
    )


@get("/account", include_in_schema=False)
async def account_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _account_page(request)


@post("/account/password", include_in_schema=False)
async def change_password(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    db = db_of(request)
    user = await db.read(lambda conn: accounts.get_user(conn, user_id=session.user_id))
    now = utcnow()
    ip = page_state(request).client_ip
    wait = await db.read(lambda conn: accounts.sign_in_wait(conn, email=user.email, ip=ip, now=now))
    if wait or not (await verify_password_async(user.password_hash, form.get("current_password", ""))).ok:
        who = actor(request)
        await db.write(
            lambda conn: accounts.record_failed_reauthentication(
                conn, session=session, actor=who, method="password", outcome="failure", why="Changing the password",
                now=now,
            )
        )  # fmt: skip
        return await _account_page(request, status=422, password_errors=["Your current password is not correct."])
    new = form.get("new_password", "")
    problems = password_problems(new, email=user.email)
    if new != form.get("new_password_again", ""):
        problems.append("The two new passwords are not the same.")
    if problems:
        return await _account_page(request, status=422, password_errors=problems)
    new_hash = await hash_password_async(new)
    who = actor(request)
    await db.write(lambda conn: accounts.change_password(conn, session=session, new_hash=new_hash, actor=who, now=now))
    return redirect(request, "/account", notice="password-changed")


# -- two-factor authentication --------------------------------------------------------------------------------


async def _setup_page(request: Request[Any, Any, Any], *, status: int = 200, error: str | None = None) -> Response[Any]:
    session = page_state(request).session
    assert session is not None
    user = await db_of(request).read(lambda conn: accounts.get_user(conn, user_id=session.user_id))
    if user.totp_enabled:
        return redirect(request, "/account")
    pending = None
    # An unconfirmed seed is shown only to a session that proved the password in the last few minutes: a session
    # left open elsewhere must not be able to read (and enrol) someone's half-finished set-up.
    if user.totp_secret and session.fresh(utcnow()):
        secret = seed_box(request).open(user.totp_secret)
        uri = totp.provisioning_uri(secret, user.email)
        pending = {"secret": secret, "qr": totp.qr_svg(uri), "uri": uri}
    return render(
        request,
        "totp_setup.html",
        status=status,
        pending=pending,
        error=error,
        required=session.team_requires_2fa,
        email=session.email,
        csrf_session=True,
    )


@get("/account/2fa", include_in_schema=False)
async def totp_setup_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _setup_page(request)


@post("/account/2fa/start", include_in_schema=False)
async def totp_start(request: Request[Any, Any, Any]) -> Response[Any]:
    session = page_state(request).session
    assert session is not None
    await require_fresh(request, await form_data(request), why="Setting up two-factor authentication")
    sealed = seed_box(request).seal(totp.new_secret())
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.begin_totp_enrolment(conn, user_id=session.user_id, sealed_secret=sealed, now=now)
    )
    return redirect(request, "/account/2fa")


@post("/account/2fa/confirm", include_in_schema=False)
async def totp_confirm(request: Request[Any, Any, Any]) -> Response[Any]:
    session = page_state(request).session
    assert session is not None
    form = await form_data(request)
    db = db_of(request)
    user = await db.read(lambda conn: accounts.get_user(conn, user_id=session.user_id))
    if user.totp_enabled or not user.totp_secret:
        return redirect(request, "/account/2fa")
    await require_fresh(request, form, why="Turning on two-factor authentication")
    secret = seed_box(request).open(user.totp_secret)
    now = utcnow()
    step = totp.matching_step(secret, form.get("code", ""), now=now, last_step=user.totp_last_step)
    if step is None:
        return await _setup_page(
            request, status=422, error="That code is not right. Check your device's clock and try again."
        )
    codes = totp.new_recovery_codes()
    hashes = await asyncio.gather(*(asyncio.to_thread(totp.hash_recovery_code, code) for code in codes))
    who = actor(request)
    found = step

    def confirm(conn: Any) -> str | None:
        if not accounts.confirm_totp(conn, session=session, step=found, recovery_hashes=hashes, actor=who, now=now):
            return None
        # A step-up in assurance gets a new session token (ASVS 7.2.4); the old one stops working.
        accounts.end_session(conn, session=session, actor=who, now=now, reason="promoted")
        confirmed = accounts.get_user(conn, user_id=session.user_id)
        return accounts.start_session(
            conn,
            user=confirmed,
            team_id=session.team_id,
            stage="full",
            actor=who,
            now=now,
            authenticated_at=now,
        )

    token = await db.write(confirm)
    if token is None:
        return await _setup_page(request, status=422, error="That code was already used. Wait for the next one.")
    cookie = rules.session_cookie(token, secure=page_state(request).secure)
    return render(request, "recovery_codes.html", codes=codes, cookies=[cookie], fresh_enrolment=True, navigation=False)


@post("/account/2fa/recovery-codes", include_in_schema=False)
async def regenerate_recovery_codes(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    if not session.totp_enabled:
        raise PageRefused("Turn on two-factor authentication first.", status=409)
    await require_fresh(request, await form_data(request), why="Creating new recovery codes")
    codes = totp.new_recovery_codes()
    hashes = await asyncio.gather(*(asyncio.to_thread(totp.hash_recovery_code, code) for code in codes))
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.replace_recovery_codes(conn, session=session, hashes=hashes, actor=who, now=now)
    )
    return render(request, "recovery_codes.html", codes=codes, fresh_enrolment=False)


@post("/account/2fa/disable", include_in_schema=False)
async def disable_totp(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    await require_fresh(request, await form_data(request), why="Turning off two-factor authentication")
    who = actor(request)
    now = utcnow()
    await db_of(request).write(lambda conn: accounts.disable_totp(conn, session=session, actor=who, now=now))
    return redirect(request, "/account", notice="2fa-disabled")


# -- sessions -------------------------------------------------------------------------------------------------


@post("/account/sessions/{session_id:str}/revoke", include_in_schema=False)
async def revoke_session(request: Request[Any, Any, Any], session_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.revoke_session(conn, session=session, session_id=session_id, actor=who, now=now)
    )
    if session_id == session.id:
        return redirect(request, "/login", cookies=[rules.cleared_session_cookie(secure=page_state(request).secure)])
    return redirect(request, "/account", notice="session-revoked")


@post("/account/sessions/revoke-others", include_in_schema=False)
async def revoke_other_sessions(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.revoke_other_sessions(conn, session=session, actor=who, now=now, why="signed out by user")
    )
    return redirect(request, "/account", notice="sessions-revoked")


HANDLERS = [
    account_page,
    change_password,
    totp_setup_page,
    totp_start,
    totp_confirm,
    regenerate_recovery_codes,
    disable_totp,
    revoke_session,
    revoke_other_sessions,
]
