"""The team page: members with role, 2FA status and who added them and when; invitations; role changes and
removals; the team-wide "require 2FA" setting. The role rules live in ``accounts`` (nobody grants above their own
role; the last owner stays), the page requirements in ``PAGE_ACCESS``."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from postroom.core.clock import utcnow
from postroom.dashboard import accounts
from postroom.dashboard.policy import Role
from postroom.dashboard.routes.common import db_of, require_fresh
from postroom.dashboard.web import actor, form_data, redirect, render, signed_in
from postroom.errors import ValidationFailed


async def _team_page(
    request: Request[Any, Any, Any], *, status: int = 200, errors: dict[str, list[str]] | None = None
) -> Response[Any]:
    session = signed_in(request)
    now = utcnow()
    db = db_of(request)
    members = await db.read(lambda conn: accounts.list_members(conn, team_id=session.team_id))
    invitations = (
        await db.read(lambda conn: accounts.list_invitations(conn, team_id=session.team_id, now=now))
        if session.role.at_least(Role.ADMIN)
        else []
    )
    grantable = [r for r in Role if session.role.at_least(r)]
    return render(
        request,
        "team.html",
        status=status,
        members=members,
        invitations=invitations,
        grantable=grantable,
        errors=errors or {},
        require_2fa=session.team_requires_2fa,
    )


@get("/team", include_in_schema=False)
async def team_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _team_page(request)


@post("/team/invitations", include_in_schema=False)
async def invite(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    if form.get("role") == Role.OWNER.value:
        await require_fresh(request, form, why="Inviting a new owner")
    who = actor(request)
    now = utcnow()
    try:
        invitation, token = await db_of(request).write(
            lambda conn: accounts.invite(
                conn,
                team_id=session.team_id,
                email=form.get("email", ""),
                role=form.get("role", ""),
                inviter=session,
                actor=who,
                now=now,
            )
        )
    except ValidationFailed as exc:
        return await _team_page(request, status=422, errors=exc.errors)
    link = f"{str(request.base_url).rstrip('/')}/invite/{token}"
    return render(request, "invitation_created.html", invitation=invitation, link=link)


@post("/team/invitations/{invitation_id:str}/revoke", include_in_schema=False)
async def revoke_invitation(request: Request[Any, Any, Any], invitation_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.revoke_invitation(
            conn, team_id=session.team_id, invitation_id=invitation_id, actor=who, now=now
        )
    )
    return redirect(request, "/team", notice="invitation-revoked")


@post("/team/members/{user_id:str}/role", include_in_schema=False)
async def change_role(request: Request[Any, Any, Any], user_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    if form.get("role") == Role.OWNER.value:
        await require_fresh(request, form, why="Making someone an owner")
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.change_role(
            conn, team_id=session.team_id, user_id=user_id, role=form.get("role", ""), by=session, actor=who, now=now
        )
    )
    return redirect(request, "/team", notice="role-changed")


@post("/team/members/{user_id:str}/remove", include_in_schema=False)
async def remove_member(request: Request[Any, Any, Any], user_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.remove_member(
            conn, team_id=session.team_id, user_id=user_id, by=session, actor=who, now=now
        )
    )
    if user_id == session.user_id:
        return redirect(request, "/login")
    return redirect(request, "/team", notice="member-removed")


@post("/team/settings", include_in_schema=False)
async def team_settings(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    require = form.get("require_2fa") == "on"
    if not require and session.team_requires_2fa:
        await require_fresh(request, form, why="No longer requiring two-factor authentication")
    who = actor(request)
    now = utcnow()
    await db_of(request).write(
        lambda conn: accounts.set_require_2fa(conn, team_id=session.team_id, require=require, actor=who, now=now)
    )
    return redirect(request, "/team", notice="settings-saved")


HANDLERS = [team_page, invite, revoke_invitation, change_role, remove_member, team_settings]
