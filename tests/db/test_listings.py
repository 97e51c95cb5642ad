"""The event listings on both engines: ``total_count`` from the hourly counters is exact for any range and
filter, the counters are backfilled by their migration, every listing query is served by an index, and SQLite
reads run off the event loop."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, insert, select, text

from postroom.emails import queries
from postroom.emails import service as emails_service
from postroom.emails.queries import EventQuery
from postroom.models import email_events, event_counts, messages, teams
from tests.conftest import Backend

T0 = datetime(2031, 3, 1, 9, 0, tzinfo=UTC)
TYPES = ("injection", "delivery", "bounce", "delay")


def _new_team(backend: Backend) -> int:
    def make(conn: Connection) -> int:
        name = f"listing-{secrets.token_hex(4)}"
        made = conn.execute(insert(teams).values(name=name, created_at=T0, updated_at=T0).returning(teams.c.id))
        return int(made.scalar_one())

    return backend.write(make)


def _message(conn: Connection, team_id: int, request_id: str) -> str:
    message_id = f"msg_{secrets.token_hex(8)}"
    conn.execute(
        insert(messages).values(
            id=message_id, request_id=request_id, team_id=team_id, project_id=1, from_email="a@sender.test",
            sending_domain="sender.test", subject="", message_id_header=f"<{request_id}@x>", content="{}",
            transactional=True, msg_size=1, created_at=T0,
        )
    )  # fmt: skip
    return message_id


def _events(backend: Backend, team_id: int, moments: list[tuple[datetime, str, str]]) -> str:
    """Record one event per (moment, type, recipient) on two messages; returns the second one's request id."""
    request_id = emails_service.numeric_id()

    def record(conn: Connection) -> None:
        first, second = _message(conn, team_id, emails_service.numeric_id()), _message(conn, team_id, request_id)
        counts = emails_service.EventCounts()
        for index, (moment, event_type, rcpt) in enumerate(moments):
            emails_service.record_event(
                conn,
                team_id=team_id,
                message_id=second if index % 3 == 0 else first,
                recipient_id=index,
                rcpt_to=rcpt,
                event_type=event_type,
                now=moment,
                bounce_class=10 if event_type == "bounce" else None,
                counts=counts if index % 2 else None,  # both ways of counting
            )
        counts.write(conn)

    backend.write(record)
    return request_id


def _counted_row_by_row(conn: Connection, team_id: int, query: EventQuery) -> int:
    joined = email_events.join(messages, messages.c.id == email_events.c.message_id)
    conditions = [
        email_events.c.team_id == team_id,
        email_events.c.occurred_at >= query.since,
        email_events.c.occurred_at <= query.until,
    ]
    if query.types:
        conditions.append(email_events.c.type.in_(query.types))
    if query.recipients_in:
        conditions.append(func.lower(email_events.c.rcpt_to).in_([r.lower() for r in query.recipients_in]))
    if query.request_id:
        conditions.append(messages.c.request_id == query.request_id)
    if query.bounce_classes:
        conditions.append(email_events.c.bounce_class.in_(query.bounce_classes))
    return int(conn.execute(select(func.count()).select_from(joined).where(*conditions)).scalar_one())


def test_total_count_from_the_counters_is_exact_for_any_range_and_filter(backend: Backend) -> None:
    team_id = _new_team(backend)
    other_team = _new_team(backend)
    rng = random.Random(23)
    moments = [
        (T0 + timedelta(seconds=rng.randrange(3 * 24 * 3600)), rng.choice(TYPES), rng.choice(["A@x.test", "b@x.test"]))
        for _ in range(400)
    ]
    moments += [(T0 + timedelta(hours=5), "injection", "a@x.test")] * 3  # on an hour's first microsecond
    request_id = _events(backend, team_id, moments)
    _events(backend, other_team, moments[:50])  # another team's events never count
    edges = [T0 - timedelta(days=1), T0, T0 + timedelta(hours=5), T0 + timedelta(days=4)]
    edges += [T0 + timedelta(seconds=rng.randrange(3 * 24 * 3600), microseconds=rng.randrange(10**6)) for _ in range(8)]
    filters: list[dict[str, Any]] = [
        {},
        {"types": ("injection",)},
        {"types": ("delivery", "bounce")},
        {"recipients_in": ("a@X.test",)},
        {"request_id": request_id},
        {"bounce_classes": (10,)},
    ]

    def check(conn: Connection) -> list[tuple[int, int]]:
        seen = []
        for since in edges:
            for until in edges:
                if until < since:
                    continue
                for extra in filters:
                    query = EventQuery(since=since, until=until - timedelta(microseconds=1), limit=26, **extra)
                    seen.append(
                        (queries.count_matching(conn, team_id, query), _counted_row_by_row(conn, team_id, query))
                    )
        return seen

    seen = backend.read(check)
    assert all(counted == expected for counted, expected in seen), [s for s in seen if s[0] != s[1]][:5]
    assert max(expected for _, expected in seen) == len(moments)


def test_the_hourly_counters_add_up_to_the_events(backend: Backend) -> None:
    team_id = _new_team(backend)
    _events(backend, team_id, [(T0 + timedelta(minutes=7 * i), TYPES[i % 4], "c@x.test") for i in range(60)])

    def totals(conn: Connection) -> tuple[int, int]:
        counted = conn.execute(select(func.sum(event_counts.c.count)).where(event_counts.c.team_id == team_id))
        stored = conn.execute(select(func.count()).select_from(email_events).where(email_events.c.team_id == team_id))
        return int(counted.scalar_one()), int(stored.scalar_one())

    assert backend.read(totals) == (60, 60)


def _plans(backend: Backend, run: Callable[[Connection], object]) -> list[tuple[str, str]]:
    """Each statement ``run`` executed, with its query plan (PostgreSQL's with sequential scans priced out, so a
    plan shows a full scan only where no index can serve the statement)."""

    def explain(conn: Connection) -> list[tuple[str, str]]:
        captured: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
            captured.append((statement, parameters))

        event.listen(conn, "before_cursor_execute", capture)
        try:
            run(conn)
        finally:
            event.remove(conn, "before_cursor_execute", capture)
        prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plans = []
        for statement, parameters in captured:
            rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
            plans.append((statement, "\n".join(str(row[-1]) for row in rows)))
        return plans

    return backend.write(explain)  # a transaction, for SET LOCAL


@pytest.mark.parametrize(
    "extra",
    [
        {"types": ("injection",)},
        {},
        {"types": ("delivery", "bounce")},
        {"recipients_in": ("a@x.test",)},
        {"request_id": "1234"},
        {"bounce_classes": (10, 30)},
        {"types": ("injection",), "before_id": 1000},
    ],
)
def test_no_listing_query_scans_a_whole_table(backend: Backend, extra: dict[str, Any]) -> None:
    team_id = _new_team(backend)
    _events(backend, team_id, [(T0 + timedelta(minutes=13 * i), TYPES[i % 4], "a@x.test") for i in range(40)])
    query = EventQuery(since=T0 + timedelta(minutes=30), until=T0 + timedelta(hours=7, minutes=5), limit=26, **extra)
    plans = _plans(backend, lambda conn: queries.events_page(conn, team_id, query))
    assert len(plans) >= 2
    for statement, plan in plans:
        if backend.name == "sqlite":
            scans = [line for line in plan.splitlines() if line.startswith("SCAN")]
            if "LIMIT" in statement and len(extra.get("types", ())) < 2 and set(extra) <= {"types", "before_id"}:
                scans += [line for line in plan.splitlines() if "TEMP B-TREE" in line]  # a page sorts nothing
        else:
            scans = [line for line in plan.splitlines() if "Seq Scan" in line]
        assert not scans, f"{statement}\n{plan}"


def test_the_migration_counts_the_events_recorded_before_it(tmp_path: Path) -> None:
    from tests.support.migrations import migrating

    with migrating(tmp_path / "old.db") as db:
        db.upgrade("0010")
        db.conn.execute(insert(teams).values(id=3, name="Old team", created_at=T0, updated_at=T0))
        message_id = _message(db.conn, 3, "1")
        for index, minutes in enumerate((0, 5, 59, 60, 61, 180)):
            db.conn.execute(
                insert(email_events).values(
                    event_id=str(index), team_id=3, message_id=message_id, recipient_id=1,
                    type="delivery" if minutes == 5 else "injection", occurred_at=T0 + timedelta(minutes=minutes),
                    rcpt_to="a@x.test",
                )
            )  # fmt: skip
        db.upgrade("0013")
        rows = db.conn.execute(
            select(event_counts.c.type, event_counts.c.hour_start, event_counts.c.count).order_by(
                event_counts.c.hour_start, event_counts.c.type
            )
        ).fetchall()
        assert [tuple(r) for r in rows] == [
            ("delivery", T0, 1),
            ("injection", T0, 2),
            ("injection", T0 + timedelta(hours=1), 2),
            ("injection", T0 + timedelta(hours=3), 1),
        ]
        query = EventQuery(since=T0, until=T0 + timedelta(hours=4), limit=10, types=("injection",))
        assert queries.count_matching(db.conn, 3, query) == 5
        db.downgrade("0010")
        db.upgrade("head")


def test_a_slow_sqlite_read_does_not_hold_up_the_event_loop_or_other_reads(backend: Backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("PostgreSQL reads are awaited on asyncpg already")

    def slow(conn: Connection) -> int:
        time.sleep(0.8)  # a query that takes long
        return int(conn.execute(text("SELECT 1")).scalar_one())

    async def scenario() -> tuple[int, float, int]:
        ticks = 0
        stop = asyncio.Event()

        async def tick() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        slow_read = asyncio.create_task(backend.db.read(slow))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        quick = await backend.db.read(lambda conn: int(conn.execute(text("SELECT 2")).scalar_one()))
        quick_took = time.monotonic() - started
        result = await slow_read
        stop.set()
        await ticker
        return ticks, quick_took, result + quick

    ticks, quick_took, result = backend.loop.run(scenario())
    assert result == 3
    assert quick_took < 0.4  # not queued behind the slow read
    assert ticks >= 20  # the loop kept running for the 0.8 s (it would tick 0 times if the read held it)


def test_a_read_after_a_committed_write_sees_it_on_every_reader(backend: Backend) -> None:
    team_id = _new_team(backend)

    def rename(round_: int) -> Callable[[Connection], None]:
        def work(conn: Connection) -> None:
            conn.execute(teams.update().where(teams.c.id == team_id).values(name=f"listing-round-{round_}"))

        return work

    def name(conn: Connection) -> str:
        return str(conn.execute(select(teams.c.name).where(teams.c.id == team_id)).scalar_one())

    async def scenario() -> list[bool]:
        seen: list[bool] = []
        for round_ in range(20):
            await backend.db.write(rename(round_))
            names = await asyncio.gather(*[backend.db.read(name) for _ in range(8)])
            seen.extend(int(found.rsplit("-", 1)[1]) == round_ for found in names)
        return seen

    assert all(backend.loop.run(scenario()))
