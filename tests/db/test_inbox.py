"""The inbox table on both databases (a database of its own per engine, as these tests add teams): retention by age and by count per team (the maintenance job's pruning), team
isolation of reads, and the migration that adds sandbox keys and the inbox to an existing database."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import Connection, delete, insert, inspect, select

from postroom.core.clock import utcnow
from postroom.inbox import service as inbox_service
from postroom.models import api_keys, inbox_messages, messages, teams
from tests.conftest import Backend

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _message(conn: Connection, team_id: int) -> str:
    message_id = f"msg_{secrets.token_hex(8)}"
    conn.execute(
        insert(messages).values(
            id=message_id, request_id=str(secrets.randbits(60)), team_id=team_id, project_id=1,
            from_email="a@sender.test", sending_domain="sender.test", subject="s", message_id_header="<1@x>",
            content="{}", transactional=True, msg_size=1, created_at=T0, sandbox=True,
        )
    )  # fmt: skip
    return message_id


def _capture(backend: Backend, team_id: int, ages_in_hours: list[int], now: datetime) -> list[str]:
    def write(conn: Connection) -> list[str]:
        message_id = _message(conn, team_id)
        rows = [
            inbox_service.capture_row(
                team_id=team_id, message_id=message_id, recipient=SimpleNamespace(id=i, email=f"r{i}@example.test"),
                envelope_from="bounces@postroom.test", raw=b"Subject: s\r\n\r\nx\r\n",
                now=now - timedelta(hours=hours),
            )
            for i, hours in enumerate(ages_in_hours)
        ]  # fmt: skip
        inbox_service.store(conn, rows)
        return [row["id"] for row in rows]

    return backend.write(write)


def _second_team(backend: Backend) -> int:
    def write(conn: Connection) -> int:
        name = f"Inbox team {secrets.token_hex(4)}"
        statement = insert(teams).values(name=name, created_at=T0, updated_at=T0).returning(teams.c.id)
        return int(conn.execute(statement).scalar_one())

    return backend.write(write)


def test_retention_drops_old_captures_then_each_teams_oldest_beyond_the_count(own_backend: Backend) -> None:
    backend = own_backend
    backend.write(lambda conn: conn.execute(delete(inbox_messages)))
    now = utcnow()
    other = _second_team(backend)
    ours = _capture(backend, backend.team_id, [1, 2, 3, 4, 200], now)  # 200 h is past a 7-day age
    theirs = _capture(backend, other, [5, 6], now)
    settings = dataclasses.replace(backend.settings, inbox_max_messages=3, inbox_max_age_seconds=7 * 24 * 3600)

    removed = backend.write(lambda conn: inbox_service.prune(conn, settings=settings, now=now))

    assert removed == 2  # the 200-hour-old one by age, then our 4-hour-old one by count
    kept = backend.read(lambda conn: set(conn.execute(select(inbox_messages.c.id)).scalars()))
    assert kept == set(ours[:3]) | set(theirs)


def test_a_team_sees_only_its_own_captures(own_backend: Backend) -> None:
    backend = own_backend
    other = _second_team(backend)
    (theirs,) = _capture(backend, other, [0], utcnow())
    listed, _ = backend.read(lambda conn: inbox_service.list_captures(conn, team_id=backend.team_id))
    assert theirs not in [c.id for c in listed]
    with pytest.raises(inbox_service.CaptureNotFound):
        backend.read(lambda conn: inbox_service.view_capture(conn, team_id=backend.team_id, capture_id=theirs))
    assert backend.read(
        lambda conn: inbox_service.view_capture(conn, team_id=other, capture_id=theirs)
    ).dkim.result == ("none")


def test_the_sandbox_migration_keeps_existing_keys_and_messages_live(tmp_path: Path) -> None:
    from tests.support.migrations import migrating

    with migrating(tmp_path / "old.db") as db:
        db.upgrade("0010")
        db.conn.execute(insert(teams).values(id=3, name="Old team", created_at=T0, updated_at=T0))
        db.conn.execute(
            insert(api_keys).values(
                id="key_old", team_id=3, name="old", permission="full", digest=b"\0" * 32,
                display_prefix="lttr_AbC1234", last4="abcd", created_by="t", created_at=T0, updated_at=T0,
            )
        )  # fmt: skip
        db.upgrade("0016")
        assert db.conn.execute(select(api_keys.c.sandbox)).scalar_one() is False
        assert "inbox_messages" in inspect(db.conn).get_table_names()
        db.downgrade("0010")
        assert "inbox_messages" not in inspect(db.conn).get_table_names()
        assert "sandbox" not in {c["name"] for c in inspect(db.conn).get_columns("api_keys")}
        db.upgrade("head")
