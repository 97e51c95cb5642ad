"""Dashboard accounts on both engines: the audit log refuses change and shows tampering, a TOTP step is spent
once even under a race, the sign-in throttle, and the role rules (nobody above their own role, the last owner)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from functools import partial

import pytest
from sqlalchemy import Connection, delete, text, update

from postroom.audit import service as audit
from postroom.auth.passwords import hash_password
from postroom.core.clock import utcnow
from postroom.dashboard import accounts
from postroom.dashboard import queries as dashboard_queries
from postroom.dashboard.policy import Role
from postroom.models import audit_log
from tests.conftest import Backend

OPERATOR = accounts.Actor(name="cli:test", ip=None)
PASSWORD_HASH = hash_password("a long enough password")


def new_member(backend: Backend, role: Role) -> accounts.User:
    email = f"{role.value}-{secrets.token_hex(4)}@accounts.test"
    now = utcnow()

    def make(conn: Connection) -> accounts.User:
        _, token = accounts.create_setup_link(conn, team_id=backend.team_id, email=email, actor=OPERATOR, now=now)
        user = accounts.accept_invitation(
            conn, token=token, new_password_hash=PASSWORD_HASH, existing_user_id=None, actor=OPERATOR, now=now
        )
        dashboard_queries.set_role(conn, backend.team_id, user.id, role.value)
        return user

    return backend.write(make)


def session_of(backend: Backend, user: accounts.User) -> accounts.SessionView:
    now = utcnow()
    token = backend.write(
        lambda conn: accounts.start_session(
            conn, user=user, team_id=backend.team_id, stage="full", actor=OPERATOR, now=now
        )
    )
    assert token is not None
    session = backend.read(lambda conn: accounts.session_for_token(conn, token=token, now=now))
    assert session is not None
    return session


def test_the_audit_log_refuses_updates_and_deletes(backend: Backend) -> None:
    now = utcnow()
    entry = backend.write(
        lambda conn: audit.record(
            conn,
            team_id=backend.team_id,
            actor="alice@a.test",
            action="api_key.revoked",
            target="api_key:k",
            old={"status": "active"},
            new={"status": "revoked"},
            ip="127.0.0.1",
            now=now,
        )
    )
    with pytest.raises(Exception, match="append-only"):
        backend.write(lambda conn: conn.execute(update(audit_log).where(audit_log.c.id == entry).values(actor="x")))
    with pytest.raises(Exception, match="append-only"):
        backend.write(lambda conn: conn.execute(delete(audit_log).where(audit_log.c.id == entry)))
    listed = backend.read(lambda conn: audit.list_entries(conn, team_id=backend.team_id, action_prefix="api_key.rev"))
    assert listed[0].id == entry and listed[0].old_value == '{"status":"active"}'
    assert backend.read(audit.verify_chain) is None


def test_an_edit_behind_the_databases_back_breaks_the_hash_chain(own_backend: Backend) -> None:
    now = utcnow()
    ids = [
        own_backend.write(
            partial(
                audit.record,
                team_id=own_backend.team_id,
                actor="bob@a.test",
                action="member.role_changed",
                target=f"user:{i}",
                old={"role": "viewer"},
                new={"role": "admin"},
                ip=None,
                now=now,
            )
        )
        for i in range(3)
    ]
    assert own_backend.read(audit.verify_chain) is None

    def tamper(conn: Connection) -> None:  # what someone with raw database access might do
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change"))
        else:
            conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(update(audit_log).where(audit_log.c.id == ids[1]).values(new_value='{"role":"viewer"}'))

    own_backend.write(tamper)
    assert own_backend.read(audit.verify_chain) == ids[1]


def test_control_characters_cannot_forge_audit_lines(backend: Backend) -> None:
    now = utcnow()
    entry = backend.write(
        lambda conn: audit.record(
            conn,
            team_id=backend.team_id,
            actor="eve\r\n[INFO] forged",
            action="session.sign_in_failed",
            target=None,
            ip=None,
            now=now,
            user_agent="\x1b[31mred",
        )
    )
    stored = backend.read(lambda conn: audit.list_entries(conn, team_id=backend.team_id, limit=5))
    row = next(e for e in stored if e.id == entry)
    assert row.actor == "eve\\x0d\\x0a[INFO] forged" and row.user_agent == "\\x1b[31mred"


def test_a_totp_step_is_spent_once(backend: Backend) -> None:
    user = new_member(backend, Role.VIEWER)
    step = 1_000_000
    assert backend.write(lambda conn: accounts.use_totp_step(conn, user_id=user.id, step=step))
    assert not backend.write(lambda conn: accounts.use_totp_step(conn, user_id=user.id, step=step))
    assert not backend.write(lambda conn: accounts.use_totp_step(conn, user_id=user.id, step=step - 1))
    assert backend.write(lambda conn: accounts.use_totp_step(conn, user_id=user.id, step=step + 1))


def test_sign_in_throttle_grows_per_account_and_caps_per_ip(backend: Backend) -> None:
    email = f"victim-{secrets.token_hex(4)}@accounts.test"
    now = utcnow()
    for i in range(5):
        backend.write(
            partial(
                accounts.record_attempt,
                email=email,
                ip=f"192.0.2.{i}",
                outcome="failure",
                now=now - timedelta(seconds=10),
            )
        )
    assert backend.read(lambda conn: accounts.sign_in_wait(conn, email=email, ip="198.51.100.1", now=now)) == 0
    backend.write(lambda conn: accounts.record_attempt(conn, email=email, ip="192.0.2.9", outcome="failure", now=now))
    wait = backend.read(lambda conn: accounts.sign_in_wait(conn, email=email, ip="198.51.100.1", now=now))
    assert wait == 2  # the 6th consecutive failure: 2 s before the next try
    backend.write(lambda conn: accounts.record_attempt(conn, email=email, ip="192.0.2.9", outcome="success", now=now))
    assert backend.read(lambda conn: accounts.sign_in_wait(conn, email=email, ip="198.51.100.1", now=now)) == 0

    # From a block no other test signs in from: the suite shares this database, and the e2e dashboard tests sign in
    # as 203.0.113.7 (through a trusted proxy), which 20 failures here within the same minute would throttle.
    ip = f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    for i in range(20):
        backend.write(partial(accounts.record_attempt, email=f"u{i}@x.test", ip=ip, outcome="failure", now=now))
    assert backend.read(lambda conn: accounts.sign_in_wait(conn, email="fresh@x.test", ip=ip, now=now)) == 60


def test_code_failures_lock_code_entry_and_a_password_success_does_not_reset_them(backend: Backend) -> None:
    email = f"codes-{secrets.token_hex(4)}@accounts.test"
    now = utcnow()
    for _ in range(5):
        backend.write(lambda conn: accounts.record_attempt(conn, email=email, ip=None, outcome="code_failure", now=now))
    backend.write(lambda conn: accounts.record_attempt(conn, email=email, ip=None, outcome="success", now=now))
    assert backend.read(lambda conn: accounts.code_entry_wait(conn, email=email, now=now)) == 15 * 60


def test_nobody_grants_above_their_role_and_the_last_owner_stays(own_backend: Backend) -> None:
    owner = new_member(own_backend, Role.OWNER)
    admin = new_member(own_backend, Role.ADMIN)
    viewer = new_member(own_backend, Role.VIEWER)
    admin_session, owner_session = session_of(own_backend, admin), session_of(own_backend, owner)
    now = utcnow()
    team = own_backend.team_id

    with pytest.raises(accounts.Forbidden):
        own_backend.write(
            lambda conn: accounts.change_role(
                conn, team_id=team, user_id=viewer.id, role="owner", by=admin_session, actor=OPERATOR, now=now
            )
        )
    with pytest.raises(accounts.Forbidden):
        own_backend.write(
            lambda conn: accounts.remove_member(
                conn, team_id=team, user_id=owner.id, by=admin_session, actor=OPERATOR, now=now
            )
        )
    with pytest.raises(accounts.Forbidden):
        own_backend.write(
            lambda conn: accounts.invite(
                conn, team_id=team, email="new@x.test", role="owner", inviter=admin_session, actor=OPERATOR, now=now
            )
        )
    own_backend.write(
        lambda conn: accounts.change_role(
            conn, team_id=team, user_id=viewer.id, role="developer", by=admin_session, actor=OPERATOR, now=now
        )
    )
    with pytest.raises(accounts.Forbidden, match="last owner"):
        own_backend.write(
            lambda conn: accounts.change_role(
                conn, team_id=team, user_id=owner.id, role="admin", by=owner_session, actor=OPERATOR, now=now
            )
        )
    # Removing a member ends their sessions at once.
    viewer_session = session_of(own_backend, viewer)
    own_backend.write(
        lambda conn: accounts.remove_member(
            conn, team_id=team, user_id=viewer.id, by=admin_session, actor=OPERATOR, now=now
        )
    )
    assert own_backend.read(
        lambda conn: dashboard_queries.membership(conn, team, viewer.id)
    ) is None and viewer_session.id not in [
        s.id for s in own_backend.read(lambda conn: accounts.list_sessions(conn, session=viewer_session, now=now))
    ]


def test_an_invitation_link_works_once(backend: Backend) -> None:
    now = utcnow()
    _, token = backend.write(
        lambda conn: accounts.create_setup_link(
            conn, team_id=backend.team_id, email=f"once-{secrets.token_hex(3)}@x.test", actor=OPERATOR, now=now
        )
    )
    accept = lambda conn: accounts.accept_invitation(  # noqa: E731
        conn, token=token, new_password_hash=PASSWORD_HASH, existing_user_id=None, actor=OPERATOR, now=now
    )
    backend.write(accept)
    with pytest.raises(accounts.InvitationNotFound):
        backend.write(accept)
