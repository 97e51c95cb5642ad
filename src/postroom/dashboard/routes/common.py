"""Helpers the dashboard's route modules share: the database and settings of a request, the sealed TOTP seeds,
and the step-up check before sensitive changes."""

from __future__ import annotations

from functools import cache
from typing import Any

from litestar import Request

from postroom.auth import totp
from postroom.auth.passwords import verify_password_async
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.core.crypto import SecretBox
from postroom.dashboard import accounts
from postroom.dashboard.web import ReauthRequired, actor, page_state, signed_in
from postroom.db.engine import Database


def db_of(request: Request[Any, Any, Any]) -> Database:
    db: Database = request.app.state.db
    return db


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@cache
def _seed_box(root: bytes) -> SecretBox:
    return SecretBox(root, "totp-seed")


def seed_box(request: Request[Any, Any, Any]) -> SecretBox:
    """Seals and opens TOTP seeds with a key derived from the server secret for this purpose only."""
    return _seed_box(settings_of(request).server_secret)


async def check_code(request: Request[Any, Any, Any], user: accounts.User, code: str) -> bool:
    """Whether ``code`` is the user's current TOTP code, spending its step so it cannot be used again.

    Only a confirmed second factor counts: the seed of a set-up that was started and never confirmed proves nothing
    (whoever saw the set-up page could have it).
    """
    if not user.totp_enabled or not user.totp_secret:
        return False
    secret = seed_box(request).open(user.totp_secret)
    step = totp.matching_step(secret, code, now=utcnow(), last_step=user.totp_last_step)
    if step is None:
        return False
    found = step
    return bool(await db_of(request).write(lambda conn: accounts.use_totp_step(conn, user_id=user.id, step=found)))


async def require_fresh(request: Request[Any, Any, Any], form: dict[str, str], *, why: str) -> None:
    """Pass when the user proved who they are in the last 5 minutes, or proves it now with the form's
    ``reauth_password`` / ``reauth_code``; otherwise answer with the confirmation page."""
    session = signed_in(request)
    now = utcnow()
    if session.fresh(now):
        return
    password = form.get("reauth_password", "")
    code = form.get("reauth_code", "").strip()
    if not password and not code:
        raise ReauthRequired(form, why)
    db = db_of(request)
    who = actor(request)
    ip = page_state(request).client_ip
    user = await db.read(lambda conn: accounts.get_user(conn, user_id=session.user_id))
    if password:
        wait = await db.read(lambda conn: accounts.sign_in_wait(conn, email=user.email, ip=ip, now=now))
        ok = wait == 0 and (await verify_password_async(user.password_hash, password)).ok
        method, outcome = "password", "failure"
    else:
        wait = await db.read(lambda conn: accounts.code_entry_wait(conn, email=user.email, now=now))
        ok = wait == 0 and await check_code(request, user, code)
        method, outcome = "totp", "code_failure"
    if not ok:
        await db.write(
            lambda conn: accounts.record_failed_reauthentication(
                conn, session=session, actor=who, method=method, outcome=outcome, why=why, now=now
            )
        )
        raise ReauthRequired(form, "That did not match (or there were too many attempts). Try again.")
    await db.write(lambda conn: accounts.mark_reauthenticated(conn, session=session, actor=who, method=method, now=now))
