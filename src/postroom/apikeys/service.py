"""Creating, changing, revoking and rotating API keys.

Functions run inside a unit of work (``Database.write``/``read``) and never commit. The clear key exists only in
the ``CreatedKey`` returned by ``create_key``/``rotate_key``, to be shown once. Each change is recorded in the audit
log by the ``Actor`` who made it, in the same transaction, with what the key list shows of the key (never a secret).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row

from postroom.apikeys import queries
from postroom.audit.service import Actor
from postroom.auth.keys import display_prefix, generate_key, key_digest
from postroom.auth.scopes import Permission
from postroom.core.ids import new_id
from postroom.core.netaddr import AllowlistError, format_allowlist, parse_allowlist
from postroom.errors import NotFound, ValidationFailed

MAX_NAME_LENGTH = 255
MAX_EXPIRY_DAYS = 3650


class ApiKeyNotFound(NotFound):
    default_message = "API key not found."


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A stored key, without any secret."""

    id: str
    team_id: int
    name: str
    permission: Permission
    display_prefix: str
    last4: str
    allowed_ips: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None
    last_used_ip: str | None
    sandbox: bool = False
    """A sandbox key: its mail is captured in the local inbox, and it may only read and send."""

    @classmethod
    def from_row(cls, row: Row[Any]) -> ApiKeyRecord:
        return cls.from_mapping(dict(row._mapping))

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> ApiKeyRecord:
        return cls(
            id=row["id"],
            team_id=row["team_id"],
            permission=Permission(row["permission"]),
            name=row["name"],
            display_prefix=row["display_prefix"],
            last4=row["last4"],
            allowed_ips=row["allowed_ips"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            rotated_from_id=row["rotated_from_id"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            last_used_at=row["last_used_at"],
            last_used_ip=row["last_used_ip"],
            sandbox=bool(row["sandbox"]),
        )

    def status(self, now: datetime) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: ApiKeyRecord
    key: str
    """The key in clear. Show it once; it cannot be recovered."""


class _Unchanged:
    pass


UNCHANGED: Any = _Unchanged()
"""Passed for a field that an update leaves as it is (``None`` means "clear it" where clearing is allowed)."""


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed({"name": ["The name field is required."]})
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationFailed({"name": [f"The name must not be greater than {MAX_NAME_LENGTH} characters."]})
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ValidationFailed({"name": ["The name must not contain control characters."]})
    return name


def _clean_permission(permission: str) -> Permission:
    try:
        return Permission(permission)
    except ValueError:
        choices = ", ".join(p.value for p in Permission)
        raise ValidationFailed({"permission": [f"The permission must be one of: {choices}."]}) from None


EMPTY_ALLOWLIST = (
    "The list has no address in it. Enter addresses or ranges, or leave the field empty to allow any address."
)


def clean_allowed_ips(text: str | None) -> str | None:
    """Canonical allowlist text, or None for "any address" (``None`` or blank text).

    ``ValidationFailed`` names each bad entry, and refuses entries that parse to nothing (``","``): that would
    silently mean "any address".
    """
    if text is None or not text.strip():
        return None
    try:
        networks = parse_allowlist(text)
    except AllowlistError as exc:
        raise ValidationFailed({"allowed_ips": exc.problems}) from None
    if not networks:
        raise ValidationFailed({"allowed_ips": [EMPTY_ALLOWLIST]})
    return format_allowlist(networks)


def opens_every_address(allowed_ips: str | None) -> bool:
    """Whether an allowlist holds a ``/0`` range (``0.0.0.0/0``, ``::/0``), which admits every address of its family.

    Invalid text answers False: it is refused when stored.
    """
    try:
        networks = parse_allowlist(allowed_ips or "")
    except AllowlistError:
        return False
    return any(network.prefixlen == 0 for network in networks)


def audit_view(record: ApiKeyRecord) -> dict[str, Any]:
    """What the audit log keeps of a key: what the key list shows, never the secret."""
    return {
        "name": record.name,
        "permission": record.permission.value,
        "allowed_ips": record.allowed_ips,
        "prefix": record.display_prefix,
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
    }


def _target(record: ApiKeyRecord) -> str:
    return f"api_key:{record.id}"


def expiry_in_days(days: int | None, now: datetime) -> datetime | None:
    if days is None:
        return None
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ValidationFailed({"expires_in_days": [f"The expiry must be between 1 and {MAX_EXPIRY_DAYS} days."]})
    return now + timedelta(days=days)


def create_key(
    conn: Connection,
    *,
    team_id: int,
    name: str,
    permission: str,
    allowed_ips: str | None,
    expires_at: datetime | None,
    created_by: str,
    actor: Actor,
    now: datetime,
    rotated_from_id: str | None = None,
    sandbox: bool = False,
) -> CreatedKey:
    """A new key for ``team_id``; the returned ``CreatedKey.key`` is the only copy of the secret.

    A ``sandbox`` key (``lttr_sandbox_…``) is checked like any other key (checksum, scope, allowlist, lockout); its
    mail is captured in the local inbox instead of being delivered, and it is refused every change."""
    values = {
        "name": _clean_name(name),
        "permission": _clean_permission(permission).value,
        "allowed_ips": clean_allowed_ips(allowed_ips),
    }
    key = generate_key(sandbox=sandbox)
    row = {
        "id": new_id("key"),
        "team_id": team_id,
        **values,
        "created_permission": values["permission"],
        "digest": key_digest(key),
        "display_prefix": display_prefix(key),
        "last4": key[-4:],
        "expires_at": expires_at,
        "revoked_at": None,
        "rotated_from_id": rotated_from_id,
        "created_by": created_by[:255],
        "created_at": now,
        "updated_at": now,
        "last_used_at": None,
        "last_used_ip": None,
        "sandbox": sandbox,
    }
    queries.insert_key(conn, row)
    record = _load(conn, str(row["id"]), team_id=None)
    if rotated_from_id is None:
        actor.record(
            conn, team_id=team_id, action="api_key.created", target=_target(record), new=audit_view(record), now=now
        )
    return CreatedKey(record=record, key=key)


def _load(conn: Connection, key_id: str, *, team_id: int | None) -> ApiKeyRecord:
    row = queries.key_for_operator(conn, key_id) if team_id is None else queries.key_in_team(conn, team_id, key_id)
    if row is None:
        raise ApiKeyNotFound()
    return ApiKeyRecord.from_row(row)


def get_key(conn: Connection, *, key_id: str, team_id: int | None) -> ApiKeyRecord:
    """One key; ``team_id=None`` only for the operator's command line."""
    return _load(conn, key_id, team_id=team_id)


def list_keys(conn: Connection, *, team_id: int | None) -> list[ApiKeyRecord]:
    return [ApiKeyRecord.from_row(row) for row in queries.keys_in_team(conn, team_id)]


def update_key(
    conn: Connection,
    *,
    key_id: str,
    team_id: int | None,
    actor: Actor,
    now: datetime,
    name: str = UNCHANGED,
    permission: str = UNCHANGED,
    allowed_ips: str | None = UNCHANGED,
) -> ApiKeyRecord:
    """Change a key's name, permission or allowlist; the next request made with it sees the change."""
    current = _load(conn, key_id, team_id=team_id)
    values: dict[str, Any] = {}
    if name is not UNCHANGED:
        values["name"] = _clean_name(name)
    if permission is not UNCHANGED:
        values["permission"] = _clean_permission(permission).value
    if allowed_ips is not UNCHANGED:
        values["allowed_ips"] = clean_allowed_ips(allowed_ips)
    if values:
        values["updated_at"] = now
        queries.update_key(conn, current.id, values)
    after = _load(conn, key_id, team_id=team_id)
    actor.record_change(
        conn,
        team_id=after.team_id,
        action="api_key.updated",
        target=_target(after),
        old=audit_view(current),
        new=audit_view(after),
        now=now,
    )
    return after


def revoke_key(conn: Connection, *, key_id: str, team_id: int | None, actor: Actor, now: datetime) -> ApiKeyRecord:
    """Revoke a key for good; revoking a revoked key changes nothing (and records nothing)."""
    current = _load(conn, key_id, team_id=team_id)
    if current.revoked_at is not None:
        return current
    queries.update_key(conn, current.id, {"revoked_at": now, "updated_at": now})
    after = _load(conn, key_id, team_id=team_id)
    actor.record(
        conn,
        team_id=after.team_id,
        action="api_key.revoked",
        target=_target(after),
        old={"status": current.status(now)},
        new={"status": after.status(now), "prefix": after.display_prefix},
        now=now,
    )
    return after


def rotate_key(
    conn: Connection,
    *,
    key_id: str,
    team_id: int | None,
    grace: timedelta,
    created_by: str,
    actor: Actor,
    now: datetime,
    expires_in_days: int | None = None,
) -> tuple[CreatedKey, ApiKeyRecord]:
    """Issue a successor with the same name, permission, allowlist, kind (live or sandbox) and expiry; the old key
    stops after ``grace``.

    The successor expires when the old key would have (a rotation never extends a key's lifetime), or
    ``expires_in_days`` from now when that is given. Returns the new key (with its secret) and the old key as it
    now stands. A grace of zero stops the old key at once. An old key that already expires sooner keeps its
    earlier expiry.
    """
    if grace < timedelta(0) or grace > timedelta(days=30):
        raise ValidationFailed({"grace_hours": ["The grace period must be between 0 and 720 hours."]})
    old = _load(conn, key_id, team_id=team_id)
    if old.status(now) != "active":
        raise ValidationFailed({"id": [f"The key is {old.status(now)} and cannot be rotated."]})
    successor_expiry = old.expires_at if expires_in_days is None else expiry_in_days(expires_in_days, now)
    created = create_key(
        conn,
        team_id=old.team_id,
        name=old.name,
        permission=old.permission.value,
        allowed_ips=old.allowed_ips,
        expires_at=successor_expiry,
        created_by=created_by,
        actor=actor,
        now=now,
        rotated_from_id=old.id,
        sandbox=old.sandbox,
    )
    old_expiry = now + grace
    if old.expires_at is not None and old.expires_at < old_expiry:
        old_expiry = old.expires_at
    queries.update_key(conn, old.id, {"expires_at": old_expiry, "updated_at": now})
    after = _load(conn, old.id, team_id=None)
    actor.record(
        conn,
        team_id=old.team_id,
        action="api_key.rotated",
        target=_target(old),
        old=audit_view(old),
        new={
            **audit_view(created.record),
            "successor": created.record.id,
            "old_key_expires_at": old_expiry.isoformat(),
        },
        now=now,
    )
    return created, after


def record_use(conn: Connection, *, key_id: str, used_at: datetime, ip: str | None) -> None:
    """Last use (time and IP), and the address in the key's list of addresses it has been used from."""
    queries.record_use(conn, key_id, used_at, ip)
    if ip is not None:
        queries.note_address(conn, key_id, ip, used_at)
