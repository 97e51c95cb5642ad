"""Dashboard accounts: people, their team memberships and roles, invitations, sign-in sessions, recovery codes,
sign-in attempts, per-team security settings, where each API key has been used from, and the audit log.

Secrets are never stored in clear: passwords and recovery codes as argon2id hashes, session and invitation tokens
as SHA-256 digests (they carry 256 random bits), TOTP seeds sealed with the server secret.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from postroom.models.types import UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("totp_secret", Text, nullable=True),
    Column("totp_enabled_at", UTCDateTime, nullable=True),
    Column("totp_last_step", Integer, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("disabled_at", UTCDateTime, nullable=True),
)
"""``email`` is stored lower-case. ``totp_secret`` is sealed (``SecretBox``); ``totp_enabled_at`` is set once a
code has proved the enrolment; ``totp_last_step`` is the newest 30 s step accepted, so a code works only once."""

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("added_by", String(255), nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Index("ix_team_members_user_id", "user_id"),
)

team_settings = Table(
    "team_settings",
    metadata,
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("require_2fa", Boolean, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)
"""A team without a row has the defaults (2FA not required)."""

invitations = Table(
    "invitations",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("email", String(254), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_digest", String(64), nullable=False, unique=True),
    Column("invited_by", String(255), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("accepted_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)
"""An invitation link (and the operator's one-time setup link) is ``/invite/<token>``; only its digest is kept."""

dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("token_digest", String(64), nullable=False, unique=True),
    Column("user_id", String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("team_id", Integer, ForeignKey("teams.id", ondelete="CASCADE"), nullable=False),
    Column("stage", String(8), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("authenticated_at", UTCDateTime, nullable=False),
    Column("ip", String(45), nullable=True),
    Column("user_agent", String(255), nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
)
"""``stage``: ``mfa`` (password proved, code still due), ``enrol`` (the team requires 2FA the user lacks) or
``full``. ``authenticated_at`` is the last time the user proved who they are (sign-in or step-up)."""

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("code_hash", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("email", String(254), nullable=False),
    Column("ip", String(45), nullable=True),
    Column("outcome", String(16), nullable=False),
    Index("ix_login_attempts_email_occurred_at", "email", "occurred_at"),
    Index("ix_login_attempts_ip_occurred_at", "ip", "occurred_at"),
)
"""Every password and second-factor attempt (``success``, ``failure``, ``throttled``), by the address typed; the
throttle is computed from these rows, so it holds in every process."""

api_key_ips = Table(
    "api_key_ips",
    metadata,
    Column("api_key_id", String(40), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True),
    Column("ip", String(45), primary_key=True),
    Column("team_id", Integer, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Index("ix_api_key_ips_team_id_first_seen_at", "team_id", "first_seen_at"),
)
"""The addresses each key has been used from, so the logs page can show a key turning up somewhere new."""

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("team_id", Integer, nullable=True),
    Column("occurred_at", UTCDateTime, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("actor_ip", String(45), nullable=True),
    Column("user_agent", String(255), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target", String(255), nullable=True),
    Column("old_value", Text, nullable=True),
    Column("new_value", Text, nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("row_hash", String(64), nullable=False, unique=True),
    Index("ix_audit_log_team_id_id", "team_id", "id"),
    UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
)
"""Append-only: the database refuses UPDATE and DELETE (triggers), and each row's ``row_hash`` covers the previous
row's, so an edit made behind the database's back breaks the chain (``postroom.audit.service.verify_chain``)."""
