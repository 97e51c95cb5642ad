"""The database layer on both engines: committed writes, isolated failures, group commit, the lockout rule."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from litestar import get
from sqlalchemy import Connection, Table, select

from postroom.auth.lockout import AuthFailure, FailureReason, LockoutPolicy, active_block, record_failure
from postroom.models import teams
from postroom.teams import queries as team_queries
from tests.conftest import Backend
from tests.support.migrations import Migrator, migrating

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _team_names(conn: Connection) -> list[str]:
    return list(conn.execute(select(teams.c.name).where(teams.c.name.like("writer-%"))).scalars())


def test_concurrent_writes_all_commit_and_a_failing_one_rolls_back_alone(backend: Backend) -> None:
    def insert(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        def work(conn: Connection) -> str:
            conn.execute(teams.insert().values(name=name, created_at=T0, updated_at=T0))
            if fail:
                raise ValueError("refused")
            return name

        return work

    async def many() -> list[object]:
        jobs = [backend.db.write(insert(f"writer-{i}", fail=(i == 7))) for i in range(50)]
        outcomes: list[object] = await asyncio.gather(*jobs, return_exceptions=True)
        return outcomes

    results = backend.loop.run(many())
    assert isinstance(results[7], ValueError)
    assert [r for i, r in enumerate(results) if i != 7] == [f"writer-{i}" for i in range(50) if i != 7]
    assert sorted(backend.read(_team_names)) == sorted(f"writer-{i}" for i in range(50) if i != 7)

    def cleanup(conn: Connection) -> None:
        conn.execute(teams.delete().where(teams.c.name.like("writer-%")))

    backend.write(cleanup)
    assert backend.read(_team_names) == []


def _fail(backend: Backend, ip: str, at: datetime, reason: FailureReason = FailureReason.UNKNOWN_KEY) -> bool:
    failure = AuthFailure(reason=reason, ip=ip, method="GET", path="/api/auth/check")
    return backend.write(lambda conn: record_failure(conn, failure=failure, policy=LockoutPolicy(), now=at))


def _blocked(backend: Backend, ip: str, at: datetime) -> datetime | None:
    return backend.read(lambda conn: active_block(conn, ip=ip, now=at))


def test_the_fifth_failure_in_five_minutes_blocks_for_fifteen(backend: Backend) -> None:
    ip = "192.0.2.10"
    assert [_fail(backend, ip, T0 + timedelta(seconds=i * 60)) for i in range(5)] == [False] * 4 + [True]
    fifth = T0 + timedelta(minutes=4)
    assert _blocked(backend, ip, fifth + timedelta(minutes=14, seconds=59)) == fifth + timedelta(minutes=15)
    assert _blocked(backend, ip, fifth + timedelta(minutes=15)) is None
    assert _blocked(backend, "192.0.2.11", fifth) is None


def test_failures_spread_over_more_than_the_window_do_not_block(backend: Backend) -> None:
    ip = "192.0.2.20"
    for i in range(4):
        assert not _fail(backend, ip, T0 + timedelta(seconds=i))
    assert not _fail(backend, ip, T0 + timedelta(minutes=5, seconds=1))
    assert _blocked(backend, ip, T0 + timedelta(minutes=5, seconds=2)) is None


def test_ip_denials_do_not_count_toward_the_lockout(backend: Backend) -> None:
    ip = "192.0.2.30"
    for i in range(10):
        assert not _fail(backend, ip, T0 + timedelta(seconds=i), FailureReason.IP_NOT_ALLOWED)
    assert _blocked(backend, ip, T0 + timedelta(seconds=11)) is None


def test_concurrent_failures_from_one_ip_block_it_exactly_once(backend: Backend) -> None:
    ip = "192.0.2.40"
    failure = AuthFailure(reason=FailureReason.UNKNOWN_KEY, ip=ip, method="GET", path="/x")

    async def burst() -> list[bool]:
        return list(
            await asyncio.gather(
                *[
                    backend.db.write(lambda conn: record_failure(conn, failure=failure, policy=LockoutPolicy(), now=T0))
                    for _ in range(12)
                ]
            )
        )

    outcomes = backend.loop.run(burst())
    assert outcomes.count(False) == 4  # the first four of any order are below the threshold
    assert _blocked(backend, ip, T0) == T0 + timedelta(minutes=15)


def test_a_route_without_a_scope_stops_the_app_from_starting(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from postroom import app as app_module

    @get("/unguarded", sync_to_thread=False)
    def unguarded() -> dict[str, str]:
        return {}

    monkeypatch.setattr(app_module, "API_HANDLERS", [*app_module.API_HANDLERS, unguarded])
    with pytest.raises(RuntimeError, match="GET /api/unguarded has no entry in ROUTE_SCOPES"):
        app_module.build_app(backend.settings, backend.db)


def test_the_head_revision_constant_is_alembics_head_and_the_database_is_there(backend: Backend) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from postroom.db.engine import HEAD_REVISION, MIGRATIONS_DIR, schema_revision

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_heads() == [HEAD_REVISION]
    assert backend.read(schema_revision) == HEAD_REVISION


_OLD_MESSAGE: dict[str, object] = {
    "id": "msg_old", "request_id": "1", "team_id": 3, "project_id": 1, "from_email": "a@sender.test",
    "sending_domain": "sender.test", "subject": "", "message_id_header": "<1@x>", "content": "{}",
    "transactional": True, "msg_size": 1, "created_at": T0,
}  # fmt: skip
"""A message of team 3 as a database from before the later message columns holds it."""


def _old_row(db: Migrator, revision: str, table: Table, row: dict[str, object]) -> None:
    """Bring ``db`` to ``revision`` and store ``row`` in ``table`` there, for team 3 (made here too)."""
    from sqlalchemy import insert

    db.upgrade(revision)
    db.conn.execute(insert(teams).values(id=3, name="Old team", created_at=T0, updated_at=T0))
    db.conn.execute(insert(table).values(**row))


def test_messages_accepted_before_recv_method_existed_read_as_rest(tmp_path: Path) -> None:
    from postroom.models import messages

    with migrating(tmp_path / "old.db") as db:
        _old_row(db, "0009", messages, _OLD_MESSAGE)
        db.upgrade("0010")
        assert db.conn.execute(select(messages.c.recv_method)).scalar_one() == "rest"
        db.downgrade("0009")
        db.upgrade("head")


def test_a_name_may_be_registered_by_many_teams_but_approved_for_one(backend: Backend) -> None:
    """The schema itself holds the rule (a partial unique index on approved rows), on both engines."""
    from sqlalchemy import insert, update
    from sqlalchemy.exc import IntegrityError

    from postroom.models import domains

    name = f"shared-{secrets.token_hex(4)}.test"

    def team(conn: Connection) -> int:
        return team_queries.insert_team(conn, "Another team", T0)

    other = backend.write(team)

    def row(team_id: int, status: str) -> dict[str, object]:
        return {
            "id": f"dom_{secrets.token_hex(8)}", "team_id": team_id, "domain": name, "status": status,
            "dkim_selector": "s", "dkim_private_key": "k", "dkim_public_key": "p", "created_at": T0, "updated_at": T0,
        }  # fmt: skip

    first, second = row(backend.team_id, "approved"), row(other, "pending")
    backend.write(lambda conn: conn.execute(insert(domains).values([first, second])))
    with pytest.raises(IntegrityError):  # the same team twice
        backend.write(lambda conn: conn.execute(insert(domains).values(row(other, "pending"))))
    with pytest.raises(IntegrityError):  # approved for a second team
        backend.write(
            lambda conn: conn.execute(update(domains).where(domains.c.id == second["id"]).values(status="approved"))
        )
    backend.write(
        lambda conn: conn.execute(update(domains).where(domains.c.id == first["id"]).values(status="pending"))
    )
    backend.write(
        lambda conn: conn.execute(update(domains).where(domains.c.id == second["id"]).values(status="approved"))
    )


def test_domains_registered_before_ownership_per_team_keep_their_status(tmp_path: Path) -> None:
    from postroom.models import domains

    with migrating(tmp_path / "old.db") as db:
        _old_row(db, "0010", domains, {
            "id": "dom_old", "team_id": 3, "domain": "old.test", "status": "approved", "dkim_selector": "s",
            "dkim_private_key": "k", "dkim_public_key": "p", "created_at": T0, "updated_at": T0,
        })  # fmt: skip
        db.upgrade("0012")
        assert db.conn.execute(select(domains.c.domain, domains.c.status)).one() == ("old.test", "approved")


def test_messages_and_domains_from_before_tracking_read_as_untracked(tmp_path: Path) -> None:
    from sqlalchemy import insert

    from postroom.models import domains, messages

    with migrating(tmp_path / "old.db") as db:
        _old_row(db, "0010", messages, _OLD_MESSAGE)
        db.conn.execute(
            insert(domains).values(
                id="dom_old", team_id=3, domain="sender.test", status="approved", dkim_selector="s",
                dkim_private_key="k", dkim_public_key="p", created_at=T0, updated_at=T0,
            )
        )  # fmt: skip
        db.upgrade("0015")
        tracked = db.conn.execute(select(messages.c.open_tracking, messages.c.click_tracking)).one()
        assert tuple(tracked) == (False, False)
        assert db.conn.execute(select(domains.c.tracking_domain, domains.c.tracking_status)).one() == (None, None)
        db.downgrade("0010")
        db.upgrade("head")
