"""Every SQL statement of the dashboard: accounts, memberships, invitations, sessions, sign-in attempts, and the
read models of the logs page. Tenant-scoped functions take the team first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from postroom.models import (
    api_key_ips,
    api_keys,
    auth_failures,
    dashboard_sessions,
    invitations,
    login_attempts,
    messages,
    recovery_codes,
    team_members,
    team_settings,
    teams,
    users,
)

# -- users ----------------------------------------------------------------------------------------------------


def user_by_email(conn: Connection, email: str) -> Row[Any] | None:
    return conn.execute(select(users).where(users.c.email == email)).first()


def user_by_id(conn: Connection, user_id: str) -> Row[Any] | None:
    return conn.execute(select(users).where(users.c.id == user_id)).first()


def insert_user(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(users.insert(), values)


def update_user(conn: Connection, user_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(users).where(users.c.id == user_id).values(**values))


def advance_totp_step(conn: Connection, user_id: str, step: int) -> bool:
    """Store ``step`` as the last used one only if it is later than the stored one: the replay check, atomically."""
    result = conn.execute(
        update(users)
        .where(
            users.c.id == user_id,
            or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
        )
        .values(totp_last_step=step)
    )
    return result.rowcount == 1


# -- teams and memberships ------------------------------------------------------------------------------------


def team_name(conn: Connection, team_id: int) -> str | None:
    return conn.execute(select(teams.c.name).where(teams.c.id == team_id)).scalar()


def membership(conn: Connection, team_id: int, user_id: str) -> Row[Any] | None:
    return conn.execute(
        select(team_members).where(team_members.c.team_id == team_id, team_members.c.user_id == user_id)
    ).first()


def first_membership(conn: Connection, user_id: str) -> Row[Any] | None:
    return conn.execute(
        select(team_members)
        .where(team_members.c.user_id == user_id)
        .order_by(team_members.c.added_at, team_members.c.team_id)
        .limit(1)
    ).first()


def members_of(conn: Connection, team_id: int) -> Sequence[Row[Any]]:
    return conn.execute(
        select(team_members, users.c.email, users.c.totp_enabled_at)
        .select_from(team_members.join(users, users.c.id == team_members.c.user_id))
        .where(team_members.c.team_id == team_id)
        .order_by(team_members.c.added_at, users.c.email)
    ).fetchall()


def count_owners(conn: Connection, team_id: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(team_members)
            .where(team_members.c.team_id == team_id, team_members.c.role == "owner")
        ).scalar_one()
    )


def insert_membership(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(team_members.insert(), values)


def set_role(conn: Connection, team_id: int, user_id: str, role: str) -> None:
    conn.execute(
        update(team_members)
        .where(team_members.c.team_id == team_id, team_members.c.user_id == user_id)
        .values(role=role)
    )


def delete_membership(conn: Connection, team_id: int, user_id: str) -> None:
    conn.execute(delete(team_members).where(team_members.c.team_id == team_id, team_members.c.user_id == user_id))


def require_2fa(conn: Connection, team_id: int) -> bool:
    value = conn.execute(select(team_settings.c.require_2fa).where(team_settings.c.team_id == team_id)).scalar()
    return bool(value)


def upsert_team_settings(conn: Connection, team_id: int, require: bool, now: datetime) -> None:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = insert(team_settings).values(team_id=team_id, require_2fa=require, updated_at=now)
    conn.execute(
        statement.on_conflict_do_update(index_elements=["team_id"], set_={"require_2fa": require, "updated_at": now})
    )


# -- invitations ----------------------------------------------------------------------------------------------


def insert_invitation(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(invitations.insert(), values)


def invitation_by_digest(conn: Connection, digest: str) -> Row[Any] | None:
    return conn.execute(select(invitations).where(invitations.c.token_digest == digest)).first()


def invitation_in_team(conn: Connection, team_id: int, invitation_id: str) -> Row[Any] | None:
    return conn.execute(
        select(invitations).where(invitations.c.team_id == team_id, invitations.c.id == invitation_id)
    ).first()


def open_invitations(conn: Connection, team_id: int, now: datetime) -> Sequence[Row[Any]]:
    return conn.execute(
        select(invitations)
        .where(
            invitations.c.team_id == team_id,
            invitations.c.accepted_at.is_(None),
            invitations.c.revoked_at.is_(None),
            invitations.c.expires_at > now,
        )
        .order_by(invitations.c.created_at)
    ).fetchall()


def close_invitation(conn: Connection, invitation_id: str, values: dict[str, Any]) -> bool:
    """Mark an open invitation accepted or revoked; False when it was not open any more (a second use)."""
    result = conn.execute(
        update(invitations)
        .where(
            invitations.c.id == invitation_id,
            invitations.c.accepted_at.is_(None),
            invitations.c.revoked_at.is_(None),
        )
        .values(**values)
    )
    return result.rowcount == 1


# -- sessions -------------------------------------------------------------------------------------------------


def insert_session(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(dashboard_sessions.insert(), values)


def session_by_digest(conn: Connection, digest: str) -> Row[Any] | None:
    """The session with its user, membership and team setting, in one query (this runs on every page)."""
    return conn.execute(
        select(
            dashboard_sessions,
            users.c.email,
            users.c.totp_enabled_at,
            users.c.disabled_at,
            team_members.c.role,
            team_settings.c.require_2fa,
            teams.c.name.label("team_name"),
        )
        .select_from(
            dashboard_sessions.join(users, users.c.id == dashboard_sessions.c.user_id)
            .join(teams, teams.c.id == dashboard_sessions.c.team_id)
            .outerjoin(
                team_members,
                and_(
                    team_members.c.team_id == dashboard_sessions.c.team_id,
                    team_members.c.user_id == dashboard_sessions.c.user_id,
                ),
            )
            .outerjoin(team_settings, team_settings.c.team_id == dashboard_sessions.c.team_id)
        )
        .where(dashboard_sessions.c.token_digest == digest)
    ).first()


def update_session(conn: Connection, session_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(dashboard_sessions).where(dashboard_sessions.c.id == session_id).values(**values))


def live_sessions_of(conn: Connection, user_id: str, now: datetime) -> Sequence[Row[Any]]:
    return conn.execute(
        select(dashboard_sessions)
        .where(
            dashboard_sessions.c.user_id == user_id,
            dashboard_sessions.c.revoked_at.is_(None),
            dashboard_sessions.c.expires_at > now,
        )
        .order_by(dashboard_sessions.c.last_seen_at.desc())
    ).fetchall()


def revoke_sessions(
    conn: Connection, user_id: str, now: datetime, *, session_id: str | None = None, except_id: str | None = None
) -> int:
    """End a user's sessions: one (``session_id``), or all but one (``except_id``), or all."""
    conditions = [dashboard_sessions.c.user_id == user_id, dashboard_sessions.c.revoked_at.is_(None)]
    if session_id is not None:
        conditions.append(dashboard_sessions.c.id == session_id)
    if except_id is not None:
        conditions.append(dashboard_sessions.c.id != except_id)
    return int(conn.execute(update(dashboard_sessions).where(*conditions).values(revoked_at=now)).rowcount)


# -- recovery codes -------------------------------------------------------------------------------------------


def unused_recovery_codes(conn: Connection, user_id: str) -> Sequence[Row[Any]]:
    return conn.execute(  # type: ignore[return-value]
        select(recovery_codes.c.id, recovery_codes.c.code_hash).where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None)
        )
    ).fetchall()


def replace_recovery_codes(conn: Connection, user_id: str, hashes: Sequence[str], now: datetime) -> None:
    conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    if hashes:
        conn.execute(recovery_codes.insert(), [{"user_id": user_id, "code_hash": h, "created_at": now} for h in hashes])


def use_recovery_code(conn: Connection, user_id: str, code_id: int, now: datetime) -> bool:
    result = conn.execute(
        update(recovery_codes)
        .where(recovery_codes.c.id == code_id, recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None))
        .values(used_at=now)
    )
    return result.rowcount == 1


# -- sign-in attempts -----------------------------------------------------------------------------------------


def insert_login_attempt(conn: Connection, values: dict[str, Any]) -> None:
    conn.execute(login_attempts.insert(), values)


def attempts_from_ip(conn: Connection, ip: str, since: datetime) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(login_attempts)
            .where(login_attempts.c.ip == ip, login_attempts.c.occurred_at > since)
        ).scalar_one()
    )


def failures_since_success(
    conn: Connection, email: str, outcome: str, reset_by: str, since: datetime
) -> tuple[int, datetime | None]:
    """How many ``outcome`` rows the address has after its last ``reset_by`` (and after ``since``); the newest."""
    last_success = conn.execute(
        select(func.max(login_attempts.c.occurred_at)).where(
            login_attempts.c.email == email, login_attempts.c.outcome == reset_by
        )
    ).scalar()
    start = since if last_success is None or last_success < since else last_success
    row = conn.execute(
        select(func.count(), func.max(login_attempts.c.occurred_at)).where(
            login_attempts.c.email == email,
            login_attempts.c.outcome == outcome,
            login_attempts.c.occurred_at > start,
        )
    ).one()
    return int(row[0]), row[1]


def delete_login_attempts_before(conn: Connection, cutoff: datetime) -> None:
    conn.execute(delete(login_attempts).where(login_attempts.c.occurred_at < cutoff))


# -- logs page ------------------------------------------------------------------------------------------------


def hourly_message_counts(conn: Connection, team_id: int, since: datetime) -> dict[datetime, int]:
    """Messages accepted per UTC hour since ``since`` (hours without messages are absent)."""
    if conn.dialect.name == "postgresql":
        hour: Any = func.date_trunc("hour", func.timezone("UTC", messages.c.created_at))
    else:
        hour = func.substr(messages.c.created_at, 1, 13)  # stored as "YYYY-MM-DD HH:MM:SS.ffffff" in UTC
    rows = conn.execute(
        select(hour.label("hour"), func.count())
        .where(messages.c.team_id == team_id, messages.c.created_at >= since)
        .group_by(hour)
    ).fetchall()
    counts: dict[datetime, int] = {}
    for bucket, count in rows:
        if isinstance(bucket, str):
            moment = datetime.fromisoformat(bucket + ":00:00").replace(tzinfo=UTC)
        else:
            moment = bucket.replace(tzinfo=UTC)
        counts[moment] = int(count)
    return counts


def auth_failures_for(conn: Connection, team_id: int, *, include_unattributed: bool, limit: int) -> Sequence[Row[Any]]:
    """Failed API authentications with the team's keys, and (for its admins) those no team's key made."""
    condition = auth_failures.c.team_id == team_id
    if include_unattributed:
        condition = or_(condition, auth_failures.c.team_id.is_(None))
    return conn.execute(
        select(auth_failures)
        .where(condition)
        .order_by(auth_failures.c.occurred_at.desc(), auth_failures.c.id.desc())
        .limit(limit)
    ).fetchall()


def dead_key_attempts(conn: Connection, team_id: int, since: datetime) -> Sequence[Row[Any]]:
    """Per key: attempts with the team's revoked or expired keys since ``since``."""
    return conn.execute(
        select(
            auth_failures.c.key_prefix,
            auth_failures.c.api_key_id,
            func.count().label("attempts"),
            func.max(auth_failures.c.occurred_at).label("last_at"),
        )
        .where(
            auth_failures.c.team_id == team_id,
            auth_failures.c.reason.in_(["revoked_key", "expired_key"]),
            auth_failures.c.occurred_at >= since,
        )
        .group_by(auth_failures.c.key_prefix, auth_failures.c.api_key_id)
    ).fetchall()


def new_keys(conn: Connection, team_id: int, since: datetime) -> Sequence[Row[Any]]:
    """Keys created since ``since``, newest first, each with ``has_successor`` (it was rotated)."""
    successor = api_keys.alias("successor")
    rotated = (
        select(successor.c.id)
        .where(successor.c.rotated_from_id == api_keys.c.id, successor.c.team_id == team_id)
        .exists()
        .label("has_successor")
    )
    return conn.execute(
        select(api_keys, rotated)
        .where(api_keys.c.team_id == team_id, api_keys.c.created_at >= since)
        .order_by(api_keys.c.created_at.desc())
    ).fetchall()


def key_ip_sightings(conn: Connection, team_id: int, since: datetime, limit: int) -> Sequence[Row[Any]]:
    """Each (key, address) pair first seen since ``since``, with whether it was the key's very first address."""
    first_ever = (
        select(func.min(api_key_ips.c.first_seen_at))
        .where(api_key_ips.c.api_key_id == api_keys.c.id)
        .correlate(api_keys)
        .scalar_subquery()
    )
    return conn.execute(
        select(
            api_key_ips.c.ip,
            api_key_ips.c.first_seen_at,
            api_keys.c.id.label("api_key_id"),
            api_keys.c.name,
            api_keys.c.display_prefix,
            (api_key_ips.c.first_seen_at == first_ever).label("first_use"),
        )
        .select_from(api_key_ips.join(api_keys, api_keys.c.id == api_key_ips.c.api_key_id))
        .where(api_key_ips.c.team_id == team_id, api_key_ips.c.first_seen_at >= since)
        .order_by(api_key_ips.c.first_seen_at.desc())
        .limit(limit)
    ).fetchall()
