"""Settings > API Keys: create (shown once), edit, rotate, revoke, and the list.

Every change goes through ``postroom.apikeys.service``, the same functions the command line uses, and the API guard
reads the key row on every request, so a change made here applies to the key's very next request. Creating a Full
Access key, rotating one (a new Full Access secret), upgrading a key to Full Access, and widening an allowlist to
every address (clearing it, or adding a ``/0`` range) need a proof of identity from the last 5 minutes. An allowlist
whose entries parse to nothing (``","``) is refused rather than stored as "any address".
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from postroom.apikeys import service as keys_service
from postroom.apikeys.service import UNCHANGED, ApiKeyRecord, CreatedKey
from postroom.auth.scopes import Permission
from postroom.core.clock import utcnow
from postroom.dashboard.routes.common import db_of, require_fresh
from postroom.dashboard.web import actor, form_data, redirect, render, signed_in
from postroom.errors import ValidationFailed

ROTATION_GRACE_CHOICES = {
    "0": timedelta(0),
    "1": timedelta(hours=1),
    "24": timedelta(hours=24),
    "168": timedelta(days=7),
}


def _expires_in_days(text: str) -> int | None:
    """The rotate form's optional lifetime of the new key; empty means "when the old key would have expired"."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValidationFailed({"expires_in_days": ["The expiry must be a whole number of days."]})
    return int(text)


async def _list_page(
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    errors: dict[str, list[str]] | None = None,
    values: dict[str, str] | None = None,
) -> Response[Any]:
    session = signed_in(request)
    keys = await db_of(request).read(lambda conn: keys_service.list_keys(conn, team_id=session.team_id))
    now = utcnow()
    return render(
        request,
        "keys.html",
        status=status,
        keys=keys,
        now=now,
        errors=errors or {},
        values=values or {"name": "", "permission": "sending", "allowed_ips": "", "kind": "live"},
        Permission=Permission,
    )


@get("/settings/api-keys", include_in_schema=False)
async def list_keys(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _list_page(request)


@get("/settings/api-keys/validate-ips", include_in_schema=False)
async def validate_ips(request: Request[Any, Any, Any]) -> Response[Any]:
    """The inline check under the allowlist field (htmx): what the list means, or which entry is wrong."""
    text = request.query_params.get("allowed_ips", "")
    try:
        canonical = keys_service.clean_allowed_ips(text)
    except ValidationFailed as exc:
        return render(request, "_ips_feedback.html", problems=exc.errors.get("allowed_ips", []), canonical=None)
    return render(request, "_ips_feedback.html", problems=[], canonical=canonical)


@post("/settings/api-keys", include_in_schema=False)
async def create_key(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    values = {k: form.get(k, "") for k in ("name", "permission", "allowed_ips")}
    values["kind"] = form.get("kind") or "live"
    if values["kind"] not in ("live", "sandbox"):
        return await _list_page(
            request, status=422, errors={"kind": ["The kind must be live or sandbox."]}, values=values
        )
    if values["permission"] == Permission.FULL.value:
        await require_fresh(request, form, why="Creating a Full Access key")
    who = actor(request)
    now = utcnow()

    def create(conn: Any) -> CreatedKey:
        created = keys_service.create_key(
            conn,
            team_id=session.team_id,
            name=values["name"],
            permission=values["permission"],
            allowed_ips=values["allowed_ips"] or None,
            expires_at=None,
            created_by=session.email,
            actor=who,
            now=now,
            sandbox=values["kind"] == "sandbox",
        )
        return created

    try:
        created = await db_of(request).write(create)
    except ValidationFailed as exc:
        return await _list_page(request, status=422, errors=exc.errors, values=values)
    return render(request, "key_created.html", created=created, rotated_from=None)


@get("/settings/api-keys/{key_id:str}", include_in_schema=False)
async def key_page(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    key = await db_of(request).read(lambda conn: keys_service.get_key(conn, key_id=key_id, team_id=session.team_id))
    return render(request, "key_edit.html", key=key, now=utcnow(), errors={}, values=None, Permission=Permission)


@post("/settings/api-keys/{key_id:str}", include_in_schema=False)
async def update_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    db = db_of(request)
    current = await db.read(lambda conn: keys_service.get_key(conn, key_id=key_id, team_id=session.team_id))
    name, permission, allowed_ips = form.get("name", ""), form.get("permission", ""), form.get("allowed_ips", "")
    upgrading = permission == Permission.FULL.value and current.permission != Permission.FULL
    cleared = bool(current.allowed_ips) and not allowed_ips.strip()
    opening = cleared or (
        keys_service.opens_every_address(allowed_ips) and not keys_service.opens_every_address(current.allowed_ips)
    )
    if upgrading or opening:
        await require_fresh(
            request,
            form,
            why="Granting Full Access" if upgrading else "Removing the IP restriction (allow any address)",
        )
    who = actor(request)
    now = utcnow()

    def update(conn: Any) -> None:
        keys_service.update_key(
            conn,
            key_id=key_id,
            team_id=session.team_id,
            actor=who,
            now=now,
            name=name,
            permission=permission or UNCHANGED,
            allowed_ips=allowed_ips.strip() or None,
        )

    try:
        await db.write(update)
    except ValidationFailed as exc:
        values = {"name": name, "permission": permission, "allowed_ips": allowed_ips}
        return render(
            request,
            "key_edit.html",
            status=422,
            key=current,
            now=now,
            errors=exc.errors,
            values=values,
            Permission=Permission,
        )
    return redirect(request, f"/settings/api-keys/{key_id}", notice="key-updated")


@post("/settings/api-keys/{key_id:str}/rotate", include_in_schema=False)
async def rotate_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    grace = ROTATION_GRACE_CHOICES.get(form.get("grace_hours", "24"))
    if grace is None:
        raise ValidationFailed({"grace_hours": ["Choose now, 1 hour, 24 hours or 7 days."]})
    current = await db_of(request).read(lambda conn: keys_service.get_key(conn, key_id=key_id, team_id=session.team_id))
    if current.permission == Permission.FULL:
        await require_fresh(request, form, why="Rotating a Full Access key (a new Full Access secret)")
    expires_in_days = _expires_in_days(form.get("expires_in_days", ""))
    who = actor(request)
    now = utcnow()

    def rotate(conn: Any) -> tuple[CreatedKey, ApiKeyRecord]:
        return keys_service.rotate_key(
            conn,
            key_id=key_id,
            team_id=session.team_id,
            grace=grace,
            created_by=session.email,
            actor=who,
            now=now,
            expires_in_days=expires_in_days,
        )

    created, old = await db_of(request).write(rotate)
    return render(request, "key_created.html", created=created, rotated_from=old)


@post("/settings/api-keys/{key_id:str}/revoke", include_in_schema=False)
async def revoke_key(request: Request[Any, Any, Any], key_id: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    who = actor(request)
    now = utcnow()

    await db_of(request).write(
        lambda conn: keys_service.revoke_key(conn, key_id=key_id, team_id=session.team_id, actor=who, now=now)
    )
    return redirect(request, "/settings/api-keys", notice="key-revoked")


HANDLERS = [list_keys, validate_ips, create_key, key_page, update_key, rotate_key, revoke_key]
