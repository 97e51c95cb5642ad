"""People and their access: accounts, invitations, memberships and roles, sign-in sessions, the sign-in throttle,
two-factor enrolment and recovery codes.

Units of work over a ``Connection``; nothing here commits, hashes a password or imports Litestar. Password and
recovery-code hashing (argon2id, ~28 ms each) happens in the caller, off the event loop and outside any
transaction, and only hashes come in. Every change that matters to security writes its audit event in the same
transaction (``postroom.audit.service.record``).

Sign-in throttle, computed from ``login_attempts`` so it holds in every
process: one address may make 20 attempts a minute; one account, after 5 consecutive failures, must wait 1 s, 2 s,
4 s … up to 15 minutes before the next attempt is even checked. Attempts refused by the throttle are recorded but
do not lengthen the wait, and the wait never becomes a permanent lock, which bounds what an attacker can do to a
victim's account (malicious lockout) to a 15-minute delay per guess. Wrong second-factor codes have their own
budget: 5 in 5 minutes lock code entry for 15 minutes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection

from postroom.audit import service as audit
from postroom.audit.service import Actor as Actor
from postroom.auth import sessions as session_rules
from postroom.core.ids import new_id
from postroom.dashboard import queries
from postroom.dashboard.policy import Role
from postroom.errors import NotFound, PostroomError, ValidationFailed

SETUP_LINK_LIFETIME = timedelta(hours=24)
INVITATION_LIFETIME = timedelta(days=7)
IP_ATTEMPTS_PER_MINUTE = 20
ACCOUNT_FREE_FAILURES = 5
ACCOUNT_MAX_DELAY = timedelta(minutes=15)
CODE_FAILURES = 5
CODE_WINDOW = timedelta(minutes=5)
CODE_LOCK = timedelta(minutes=15)
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")


class MemberNotFound(NotFound):
    default_message = "Member not found."


class InvitationNotFound(NotFound):
    default_message = "Invitation not found."


class Forbidden(PostroomError):
    """The signed-in member may not do this (the role table allows the page, a finer rule refuses the action)."""

    status = 403
    default_message = "You do not have permission to do this."
    error_code = "forbidden"


class TooManyAttempts(PostroomError):
    status = 429
    default_message = "Too many sign-in attempts. Wait a moment and try again."
    error_code = "rate_limit_exceeded"

    def __init__(self, retry_after_seconds: int) -> None:
        seconds = max(1, retry_after_seconds)
        super().__init__(
            f"Too many sign-in attempts. Try again in {_duration(seconds)}.", headers={"Retry-After": str(seconds)}
        )
        self.retry_after_seconds = seconds


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{(seconds + 59) // 60} minutes"


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    password_hash: str
    totp_secret: str | None
    totp_enabled: bool
    totp_last_step: int | None


@dataclass(frozen=True, slots=True)
class SessionView:
    """A live session as a page sees it: who, which team, what role, how far through sign-in."""

    id: str
    token_digest: str
    user_id: str
    email: str
    team_id: int
    team_name: str
    role: Role
    stage: str
    totp_enabled: bool
    team_requires_2fa: bool
    created_at: datetime
    last_seen_at: datetime
    authenticated_at: datetime

    def fresh(self, now: datetime) -> bool:
        """Whether the user proved who they are recently enough for a sensitive change."""
        return now - self.authenticated_at <= session_rules.REAUTH_WINDOW


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    email: str
    role: Role
    totp_enabled: bool
    added_by: str
    added_at: datetime


@dataclass(frozen=True, slots=True)
class Invitation:
    id: str
    team_id: int
    email: str
    role: Role
    invited_by: str
    created_at: datetime
    expires_at: datetime


def normalise_email(text: str) -> str:
    email = text.strip().lower()
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        raise ValidationFailed({"email": ["Enter a valid email address."]})
    return email


def parse_role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise ValidationFailed({"role": ["Choose owner, admin, developer or viewer."]}) from None


def _user(row: object) -> User:
    m = row._mapping  # type: ignore[attr-defined]
    return User(
        id=m["id"],
        email=m["email"],
        password_hash=m["password_hash"],
        totp_secret=m["totp_secret"],
        totp_enabled=m["totp_enabled_at"] is not None,
        totp_last_step=m["totp_last_step"],
    )


def find_user(conn: Connection, *, email: str) -> User | None:
    row = queries.user_by_email(conn, email.strip().lower())
    return None if row is None else _user(row)


def first_team(conn: Connection, *, user_id: str) -> int | None:
    """The team a sign-in opens: the first one the user joined."""
    row = queries.first_membership(conn, user_id)
    return None if row is None else int(row.team_id)


def get_user(conn: Connection, *, user_id: str) -> User:
    row = queries.user_by_id(conn, user_id)
    if row is None:
        raise MemberNotFound()
    return _user(row)


# -- invitations and the operator's setup link ----------------------------------------------------------------


def _invitation(row: object) -> Invitation:
    m = row._mapping  # type: ignore[attr-defined]
    return Invitation(
        id=m["id"],
        team_id=m["team_id"],
        email=m["email"],
        role=Role(m["role"]),
        invited_by=m["invited_by"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
    )


def _insert_invitation(
    conn: Connection, *, team_id: int, email: str, role: Role, invited_by: str, lifetime: timedelta, now: datetime
) -> tuple[Invitation, str]:
    token = session_rules.new_token()
    invitation_id = new_id("inv")
    queries.insert_invitation(
        conn,
        {
            "id": invitation_id,
            "team_id": team_id,
            "email": email,
            "role": role.value,
            "token_digest": session_rules.token_digest(token),
            "invited_by": invited_by[:255],
            "created_at": now,
            "expires_at": now + lifetime,
            "accepted_at": None,
            "revoked_at": None,
        },
    )
    row = queries.invitation_in_team(conn, team_id, invitation_id)
    return _invitation(row), token


def create_setup_link(
    conn: Connection, *, team_id: int, email: str, actor: Actor, now: datetime
) -> tuple[Invitation, str]:
    """The operator's one-time link that makes ``email`` an owner of ``team_id`` (valid 24 hours, used once).

    An address that already has an account proves its password on the link instead of choosing one.
    """
    email = normalise_email(email)
    existing = find_user(conn, email=email)
    if existing is not None and queries.membership(conn, team_id, existing.id) is not None:
        current = queries.membership(conn, team_id, existing.id)
        assert current is not None
        if current.role == Role.OWNER.value:
            raise ValidationFailed({"email": [f"{email} is already an owner of this team."]})
    invitation, token = _insert_invitation(
        conn,
        team_id=team_id,
        email=email,
        role=Role.OWNER,
        invited_by=actor.name,
        lifetime=SETUP_LINK_LIFETIME,
        now=now,
    )
    actor.record(
        conn,
        team_id=team_id,
        action="member.setup_link_created",
        target=f"user:{email}",
        new={"role": "owner", "expires_at": invitation.expires_at.isoformat()},
        now=now,
    )
    return invitation, token


def invite(
    conn: Connection, *, team_id: int, email: str, role: str, inviter: SessionView, actor: Actor, now: datetime
) -> tuple[Invitation, str]:
    """An invitation link for ``email`` to join with ``role``; nobody may invite above their own role."""
    email = normalise_email(email)
    wanted = parse_role(role)
    if not inviter.role.at_least(wanted):
        raise Forbidden(f"You cannot invite someone as {wanted.label}: it is above your own role.")
    existing = find_user(conn, email=email)
    if existing is not None and queries.membership(conn, team_id, existing.id) is not None:
        raise ValidationFailed({"email": [f"{email} is already a member of this team."]})
    invitation, token = _insert_invitation(
        conn,
        team_id=team_id,
        email=email,
        role=wanted,
        invited_by=inviter.email,
        lifetime=INVITATION_LIFETIME,
        now=now,
    )
    actor.record(
        conn,
        team_id=team_id,
        action="member.invited",
        target=f"user:{email}",
        new={"role": wanted.value},
        now=now,
    )
    return invitation, token


def list_invitations(conn: Connection, *, team_id: int, now: datetime) -> list[Invitation]:
    return [_invitation(row) for row in queries.open_invitations(conn, team_id, now)]


def revoke_invitation(conn: Connection, *, team_id: int, invitation_id: str, actor: Actor, now: datetime) -> None:
    row = queries.invitation_in_team(conn, team_id, invitation_id)
    if row is None or not queries.close_invitation(conn, invitation_id, {"revoked_at": now}):
        raise InvitationNotFound()
    actor.record(
        conn,
        team_id=team_id,
        action="member.invitation_revoked",
        target=f"user:{row.email}",
        old={"role": row.role},
        now=now,
    )


def open_invitation(conn: Connection, *, token: str, now: datetime) -> Invitation | None:
    """The invitation a link carries, while it can still be used."""
    row = queries.invitation_by_digest(conn, session_rules.token_digest(token))
    if row is None or row.accepted_at is not None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return _invitation(row)


def accept_invitation(
    conn: Connection,
    *,
    token: str,
    new_password_hash: str | None,
    existing_user_id: str | None,
    actor: Actor,
    now: datetime,
) -> User:
    """Join the team the link names: a new account (with its password hash) or an existing, proven one.

    The link is spent in the same transaction, so a second use (or a race of two) fails.
    """
    invitation = open_invitation(conn, token=token, now=now)
    if invitation is None or not queries.close_invitation(conn, invitation.id, {"accepted_at": now}):
        raise InvitationNotFound("This link has expired or was already used.")
    if existing_user_id is not None:
        user = get_user(conn, user_id=existing_user_id)
        if user.email != invitation.email:
            raise Forbidden("This invitation is for another address.")
    else:
        if new_password_hash is None or find_user(conn, email=invitation.email) is not None:
            raise ValidationFailed({"password": ["Sign in with your existing password to accept."]})
        user_id = new_id("usr")
        queries.insert_user(
            conn,
            {
                "id": user_id,
                "email": invitation.email,
                "password_hash": new_password_hash,
                "totp_secret": None,
                "totp_enabled_at": None,
                "totp_last_step": None,
                "created_at": now,
                "updated_at": now,
                "disabled_at": None,
            },
        )
        user = get_user(conn, user_id=user_id)
        audit.record(
            conn,
            team_id=invitation.team_id,
            actor=user.email,
            action="user.created",
            target=f"user:{user.email}",
            ip=actor.ip,
            now=now,
            user_agent=actor.user_agent,
        )
    current = queries.membership(conn, invitation.team_id, user.id)
    if current is None:
        queries.insert_membership(
            conn,
            {
                "team_id": invitation.team_id,
                "user_id": user.id,
                "role": invitation.role.value,
                "added_by": invitation.invited_by,
                "added_at": now,
            },
        )
        old_role = None
    else:
        old_role = current.role
        if not Role(current.role).at_least(invitation.role):
            queries.set_role(conn, invitation.team_id, user.id, invitation.role.value)
    audit.record(
        conn,
        team_id=invitation.team_id,
        actor=user.email,
        action="member.added",
        target=f"user:{user.email}",
        old=None if old_role is None else {"role": old_role},
        new={"role": invitation.role.value, "invited_by": invitation.invited_by},
        ip=actor.ip,
        now=now,
        user_agent=actor.user_agent,
    )
    return user


# -- members and roles ----------------------------------------------------------------------------------------


def list_members(conn: Connection, *, team_id: int) -> list[Member]:
    return [
        Member(
            user_id=row.user_id,
            email=row.email,
            role=Role(row.role),
            totp_enabled=row.totp_enabled_at is not None,
            added_by=row.added_by,
            added_at=row.added_at,
        )
        for row in queries.members_of(conn, team_id)
    ]


def _target_member(conn: Connection, team_id: int, user_id: str) -> tuple[Role, str]:
    row = queries.membership(conn, team_id, user_id)
    user = queries.user_by_id(conn, user_id)
    if row is None or user is None:
        raise MemberNotFound()
    return Role(row.role), user.email


def change_role(
    conn: Connection, *, team_id: int, user_id: str, role: str, by: SessionView, actor: Actor, now: datetime
) -> None:
    """Nobody grants above their own role or changes someone ranked above them; the last owner stays an owner."""
    wanted = parse_role(role)
    current, email = _target_member(conn, team_id, user_id)
    if not by.role.at_least(wanted) or not by.role.at_least(current):
        raise Forbidden("You cannot change the role of someone ranked above you or grant a role above your own.")
    if current == wanted:
        return
    if current == Role.OWNER and queries.count_owners(conn, team_id) <= 1:
        raise Forbidden("The team's last owner cannot be demoted; make someone else an owner first.")
    queries.set_role(conn, team_id, user_id, wanted.value)
    actor.record(
        conn,
        team_id=team_id,
        action="member.role_changed",
        target=f"user:{email}",
        old={"role": current.value},
        new={"role": wanted.value},
        now=now,
    )


def remove_member(
    conn: Connection, *, team_id: int, user_id: str, by: SessionView, actor: Actor, now: datetime
) -> None:
    """Remove a member and end their sessions in this team at once."""
    current, email = _target_member(conn, team_id, user_id)
    if not by.role.at_least(current):
        raise Forbidden("You cannot remove someone ranked above you.")
    if current == Role.OWNER and queries.count_owners(conn, team_id) <= 1:
        raise Forbidden("The team's last owner cannot be removed.")
    queries.delete_membership(conn, team_id, user_id)
    queries.revoke_sessions(conn, user_id, now)
    actor.record(
        conn,
        team_id=team_id,
        action="member.removed",
        target=f"user:{email}",
        old={"role": current.value},
        now=now,
    )


def team_requires_2fa(conn: Connection, *, team_id: int) -> bool:
    return queries.require_2fa(conn, team_id)


def set_require_2fa(conn: Connection, *, team_id: int, require: bool, actor: Actor, now: datetime) -> None:
    before = queries.require_2fa(conn, team_id)
    if before == require:
        return
    queries.upsert_team_settings(conn, team_id, require, now)
    actor.record(
        conn,
        team_id=team_id,
        action="team.require_2fa_changed",
        target=f"team:{team_id}",
        old={"require_2fa": before},
        new={"require_2fa": require},
        now=now,
    )


# -- sign-in throttle -----------------------------------------------------------------------------------------


def sign_in_wait(conn: Connection, *, email: str, ip: str | None, now: datetime) -> int:
    """Seconds before this address (from this IP) may try a password again; 0 when it may now."""
    if ip is not None and queries.attempts_from_ip(conn, ip, now - timedelta(minutes=1)) >= IP_ATTEMPTS_PER_MINUTE:
        return 60
    failures, last = queries.failures_since_success(conn, email, "failure", "success", now - timedelta(days=1))
    if failures < ACCOUNT_FREE_FAILURES or last is None:
        return 0
    delay = min(timedelta(seconds=2 ** (failures - ACCOUNT_FREE_FAILURES)), ACCOUNT_MAX_DELAY)
    remaining = (last + delay - now).total_seconds()
    return max(0, int(remaining + 0.999))


def code_entry_wait(conn: Connection, *, email: str, now: datetime) -> int:
    """Seconds before second-factor codes are accepted again for this account (after 5 wrong ones in 5 minutes)."""
    failures, last = queries.failures_since_success(conn, email, "code_failure", "code_success", now - CODE_WINDOW)
    if failures < CODE_FAILURES or last is None:
        return 0
    return max(0, int((last + CODE_LOCK - now).total_seconds() + 0.999))


def record_attempt(conn: Connection, *, email: str, ip: str | None, outcome: str, now: datetime) -> None:
    """``success``/``failure`` (password), ``code_success``/``code_failure`` (second factor) or ``throttled``.

    A password success does not clear code failures: knowing the password must not buy more code guesses.
    """
    queries.insert_login_attempt(conn, {"occurred_at": now, "email": email[:254], "ip": ip, "outcome": outcome})


def forget_old_attempts(conn: Connection, *, now: datetime) -> None:
    queries.delete_login_attempts_before(conn, now - timedelta(days=30))


# -- sessions -------------------------------------------------------------------------------------------------


def start_session(
    conn: Connection,
    *,
    user: User,
    team_id: int | None,
    stage: str,
    actor: Actor,
    now: datetime,
    authenticated_at: datetime | None = None,
) -> str | None:
    """A new session for ``user`` (in ``team_id``, or their first team) and its token; None without a team."""
    if team_id is None:
        membership = queries.first_membership(conn, user.id)
        if membership is None:
            return None
        team_id = int(membership.team_id)
    token = session_rules.new_token()
    queries.insert_session(
        conn,
        {
            "id": new_id("ses"),
            "token_digest": session_rules.token_digest(token),
            "user_id": user.id,
            "team_id": team_id,
            "stage": stage,
            "created_at": now,
            "last_seen_at": now,
            "expires_at": now + session_rules.ABSOLUTE_LIFETIME,
            "authenticated_at": authenticated_at or now,
            "ip": actor.ip,
            "user_agent": None if actor.user_agent is None else actor.user_agent[:255],
            "revoked_at": None,
        },
    )
    return token


def session_for_token(conn: Connection, *, token: str, now: datetime) -> SessionView | None:
    """The live session a cookie names; None when unknown, ended, idle too long, expired, or no longer a member."""
    row = queries.session_by_digest(conn, session_rules.token_digest(token))
    if row is None or row.revoked_at is not None or row.disabled_at is not None or row.role is None:
        return None
    if row.expires_at <= now or now - row.last_seen_at > session_rules.IDLE_TIMEOUT:
        return None
    return SessionView(
        id=row.id,
        token_digest=row.token_digest,
        user_id=row.user_id,
        email=row.email,
        team_id=row.team_id,
        team_name=row.team_name,
        role=Role(row.role),
        stage=row.stage,
        totp_enabled=row.totp_enabled_at is not None,
        team_requires_2fa=bool(row.require_2fa),
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        authenticated_at=row.authenticated_at,
    )


def touch_session(conn: Connection, *, session_id: str, now: datetime) -> None:
    queries.update_session(conn, session_id, {"last_seen_at": now})


def end_session(
    conn: Connection, *, session: SessionView, actor: Actor, now: datetime, reason: str = "signed_out"
) -> None:
    queries.revoke_sessions(conn, session.user_id, now, session_id=session.id)
    if reason == "signed_out" and session.stage == "full":
        actor.record(
            conn,
            team_id=session.team_id,
            action="session.signed_out",
            target=f"session:{session.id}",
            now=now,
        )


def mark_reauthenticated(conn: Connection, *, session: SessionView, actor: Actor, method: str, now: datetime) -> None:
    queries.update_session(conn, session.id, {"authenticated_at": now, "last_seen_at": now})
    actor.record(
        conn,
        team_id=session.team_id,
        action="session.reauthenticated",
        target=f"session:{session.id}",
        new={"method": method},
        now=now,
    )


def record_failed_reauthentication(
    conn: Connection, *, session: SessionView, actor: Actor, method: str, outcome: str, why: str, now: datetime
) -> None:
    """A wrong password or code when re-confirming before a sensitive change: a throttle attempt and an audit event."""
    record_attempt(conn, email=session.email, ip=actor.ip, outcome=outcome, now=now)
    actor.record(
        conn,
        team_id=session.team_id,
        action="session.reauthentication_failed",
        target=f"session:{session.id}",
        new={"method": method, "for": why},
        now=now,
    )


@dataclass(frozen=True, slots=True)
class SessionListing:
    id: str
    created_at: datetime
    last_seen_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


def list_sessions(conn: Connection, *, session: SessionView, now: datetime) -> list[SessionListing]:
    """The user's live sessions, most recently used first."""
    listing = []
    for row in queries.live_sessions_of(conn, session.user_id, now):
        if now - row.last_seen_at > session_rules.IDLE_TIMEOUT:
            continue
        listing.append(
            SessionListing(
                id=row.id,
                created_at=row.created_at,
                last_seen_at=row.last_seen_at,
                ip=row.ip,
                user_agent=row.user_agent,
                current=row.id == session.id,
            )
        )
    return listing


def revoke_session(conn: Connection, *, session: SessionView, session_id: str, actor: Actor, now: datetime) -> None:
    """End one of the user's own sessions (never anyone else's: the query is scoped to the user)."""
    if queries.revoke_sessions(conn, session.user_id, now, session_id=session_id) != 1:
        raise NotFound("Session not found.")
    actor.record(
        conn,
        team_id=session.team_id,
        action="session.revoked",
        target=f"session:{session_id}",
        now=now,
    )


def revoke_other_sessions(conn: Connection, *, session: SessionView, actor: Actor, now: datetime, why: str) -> int:
    count = queries.revoke_sessions(conn, session.user_id, now, except_id=session.id)
    actor.record(
        conn,
        team_id=session.team_id,
        action="session.others_revoked",
        target=f"user:{session.email}",
        new={"sessions_ended": count, "reason": why},
        now=now,
    )
    return count


# -- passwords and second factors -----------------------------------------------------------------------------


def change_password(conn: Connection, *, session: SessionView, new_hash: str, actor: Actor, now: datetime) -> None:
    """Store the new hash and end every other session of the user (ASVS 7.4.3)."""
    queries.update_user(conn, session.user_id, {"password_hash": new_hash, "updated_at": now})
    actor.record(
        conn,
        team_id=session.team_id,
        action="user.password_changed",
        target=f"user:{session.email}",
        now=now,
    )
    revoke_other_sessions(conn, session=session, actor=actor, now=now, why="password changed")


def rehash_password(conn: Connection, *, user_id: str, new_hash: str, now: datetime) -> None:
    """Upgrade a hash made with older parameters, after a successful sign-in proved the password."""
    queries.update_user(conn, user_id, {"password_hash": new_hash, "updated_at": now})


def begin_totp_enrolment(conn: Connection, *, user_id: str, sealed_secret: str, now: datetime) -> None:
    """Keep a new, not yet proven seed (replacing an unproven one); enrolment completes with ``confirm_totp``."""
    user = get_user(conn, user_id=user_id)
    if user.totp_enabled:
        raise ValidationFailed({"code": ["Two-factor authentication is already on."]})
    queries.update_user(conn, user_id, {"totp_secret": sealed_secret, "totp_last_step": None, "updated_at": now})


def confirm_totp(
    conn: Connection, *, session: SessionView, step: int, recovery_hashes: Sequence[str], actor: Actor, now: datetime
) -> bool:
    """Turn 2FA on after a code proved the seed; store the recovery codes' hashes. False if the step was used."""
    if not queries.advance_totp_step(conn, session.user_id, step):
        return False
    queries.update_user(conn, session.user_id, {"totp_enabled_at": now, "updated_at": now})
    queries.replace_recovery_codes(conn, session.user_id, recovery_hashes, now)
    actor.record(
        conn,
        team_id=session.team_id,
        action="user.2fa_enabled",
        target=f"user:{session.email}",
        old={"2fa": False},
        new={"2fa": True, "recovery_codes": len(recovery_hashes)},
        now=now,
    )
    return True


def use_totp_step(conn: Connection, *, user_id: str, step: int) -> bool:
    """Spend a code's step; False when it (or a later one) was already used: the replay refusal."""
    return queries.advance_totp_step(conn, user_id, step)


def unused_recovery_codes(conn: Connection, *, user_id: str) -> list[tuple[int, str]]:
    return [(int(row.id), str(row.code_hash)) for row in queries.unused_recovery_codes(conn, user_id)]


def use_recovery_code(conn: Connection, *, session: SessionView, code_id: int, actor: Actor, now: datetime) -> bool:
    if not queries.use_recovery_code(conn, session.user_id, code_id, now):
        return False
    remaining = len(queries.unused_recovery_codes(conn, session.user_id))
    actor.record(
        conn,
        team_id=session.team_id,
        action="user.recovery_code_used",
        target=f"user:{session.email}",
        new={"remaining": remaining},
        now=now,
    )
    return True


def replace_recovery_codes(
    conn: Connection, *, session: SessionView, hashes: Sequence[str], actor: Actor, now: datetime
) -> None:
    queries.replace_recovery_codes(conn, session.user_id, hashes, now)
    actor.record(
        conn,
        team_id=session.team_id,
        action="user.recovery_codes_regenerated",
        target=f"user:{session.email}",
        new={"recovery_codes": len(hashes)},
        now=now,
    )


def disable_totp(conn: Connection, *, session: SessionView, actor: Actor, now: datetime) -> None:
    if session.team_requires_2fa:
        raise Forbidden("Your team requires two-factor authentication; it cannot be turned off.")
    queries.update_user(
        conn, session.user_id, {"totp_secret": None, "totp_enabled_at": None, "totp_last_step": None, "updated_at": now}
    )
    queries.replace_recovery_codes(conn, session.user_id, [], now)
    actor.record(
        conn,
        team_id=session.team_id,
        action="user.2fa_disabled",
        target=f"user:{session.email}",
        old={"2fa": True},
        new={"2fa": False},
        now=now,
    )
    revoke_other_sessions(conn, session=session, actor=actor, now=now, why="two-factor authentication turned off")
