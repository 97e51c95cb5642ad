"""Audience at scale: bulk import, segment counts and filtered contact listings, each against a baseline.

Runs the application in-process (ASGI calls, no sockets) on SQLite, and on PostgreSQL too when
``POSTROOM_TEST_POSTGRES_URL`` names an admin connection (a scratch database is created and dropped).

1. **Import**: ``--size`` contacts through ``POST /api/audience/contacts/bulk`` in 1,000-row requests (each row
   with its own properties, the batch with a list), against a bare ``executemany`` of the same rows into the same
   tables (contacts and list memberships), one committed transaction per 1,000 rows either way. The two are
   interleaved chunk by chunk so both see the same table size. Target: API ≥ 0.5× the baseline's contacts/s.
2. **Segment count**: a segment of three condition groups over the imported contacts, counted by the segment
   compiler's SQL, against the same condition written by hand in the dialect's SQL. Target: ≤ 1 s.
3. **Filtered listing**: ``GET /api/audience/contacts?list_id=…`` (a list of 100) and ``?status=unsubscribed``
   (100 contacts) at 1,000 contacts and again at ``--size``: p99 at the large size within 2× of the small one. The
   query plans (EXPLAIN) are printed; they must use the indexes, not scan the contacts.

    python bench/audience.py [--size 100000] [--requests 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from msgspec import convert
from sqlalchemy import Connection, text

from postroom.apikeys import service as keys_service
from postroom.app import build_app
from postroom.audience import queries as audience_queries
from postroom.audience import service as audience_service
from postroom.audience.schemas import ConditionsInput, SegmentInput
from postroom.audit.service import Actor
from postroom.config import Settings, load_settings
from postroom.core.clock import utcnow
from postroom.core.ids import new_id
from postroom.db.engine import Database, open_database
from postroom.models import contact_lists, contacts
from postroom.teams import queries as team_queries

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import scratch_postgres  # noqa: E402

UNLIMITED = {"POSTROOM_RATE_LIMIT": "1000000/second"}
CHUNK = 1000
SAMPLE = 100
PLANS = ("free", "pro", "team")
GROUPS: list[list[tuple[str, str, str | None]]] = [
    [("email", "ends_with", "@b.example"), ("plan", "equals", "pro")],
    [("age", "greater_than", "30"), ("vip", "is_true", None)],
    [("status", "equals", "subscribed")],
]
HAND_SQL = {
    "sqlite": """SELECT count(*) FROM contacts WHERE team_id = :team
        AND (email LIKE '%@b.example' OR lower(json_extract(properties, '$.plan')) = 'pro')
        AND (CAST(json_extract(properties, '$.age') AS REAL) > 30 OR json_extract(properties, '$.vip') = 'true')
        AND status = 'subscribed'""",
    "postgresql": """SELECT count(*) FROM contacts WHERE team_id = :team
        AND (email LIKE '%@b.example' OR lower(properties ->> 'plan') = 'pro')
        AND (CAST(properties ->> 'age' AS FLOAT) > 30 OR properties ->> 'vip' = 'true')
        AND status = 'subscribed'""",
}


async def asgi(app: Any, method: str, path: str, key: str, body: bytes = b"") -> tuple[int, bytes]:
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {key}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8025),
    }
    status, chunks = 0, []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _row(prefix: str, i: int) -> dict[str, Any]:
    domain = "b.example" if i % 4 == 0 else "a.example"
    return {
        "email": f"{prefix}{i}@{domain}",
        "properties": {"plan": PLANS[i % 3], "age": str(18 + i % 60), "vip": "true" if i % 10 == 0 else "false"},
    }


def _team_and_key(conn: Connection) -> tuple[int, str]:
    now = utcnow()
    team_id = team_queries.insert_team(conn, f"bench {secrets.token_hex(3)}", now)
    team_queries.insert_project(conn, team_id, "Default", is_default=True, now=now)
    created = keys_service.create_key(
        conn, team_id=team_id, name="bench", permission="full", allowed_ips=None, expires_at=None,
        created_by="bench", actor=Actor(name="bench"), now=now,
    )  # fmt: skip
    return int(team_id), created.key


def _baseline_chunk(team_id: int, list_id: str, rows: list[dict[str, Any]]) -> Any:
    def write(conn: Connection) -> None:
        now = utcnow()
        records = [
            {"id": new_id("ctc"), "team_id": team_id, "email": r["email"], "status": "subscribed",
             "properties": r["properties"], "created_at": now, "updated_at": now}
            for r in rows
        ]  # fmt: skip
        conn.execute(contacts.insert(), records)
        conn.execute(contact_lists.insert(), [{"list_id": list_id, "contact_id": r["id"]} for r in records])

    return write


def _explain(conn: Connection, query: Any) -> str:
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
    rows = conn.execute(text(prefix + str(compiled))).fetchall()
    return " | ".join(str(row[-1]) for row in rows)


async def _analyze(db: Database) -> None:
    """Fresh planner statistics on PostgreSQL, as autovacuum would have after an import this large."""
    if db.dialect == "postgresql":

        def analyze(conn: Connection) -> None:
            conn.execute(text("ANALYZE contacts"))
            conn.execute(text("ANALYZE contact_lists"))

        await db.write(analyze)


def _p99(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.99) - 1)]


async def _listing(app: Any, key: str, path: str, requests: int) -> float:
    for _ in range(20):
        assert (await asgi(app, "GET", path, key))[0] == 200
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        status, body = await asgi(app, "GET", path, key)
        samples.append(time.perf_counter() - started)
        assert status == 200, body
    return _p99(samples)


async def measure(settings: Settings, label: str, size: int, requests: int) -> None:
    db: Database = open_database(settings)
    await db.migrate()
    app = build_app(settings, db)
    api_team, key = await db.write(_team_and_key)
    base_team, _ = await db.write(_team_and_key)
    for name, kind in (("plan", "string"), ("age", "number"), ("vip", "boolean")):
        status, body = await asgi(
            app, "POST", "/api/audience/properties", key, json.dumps({"name": name, "type": kind}).encode()
        )
        assert status == 201, body
    api_list = json.loads((await asgi(app, "POST", "/api/audience/lists", key, b'{"name": "everyone"}'))[1])["data"][
        "id"
    ]
    sample = json.loads((await asgi(app, "POST", "/api/audience/lists", key, b'{"name": "sample"}'))[1])["data"]["id"]
    base_list = new_id("lst")
    await db.write(lambda conn: audience_queries.insert_list(conn, base_team, base_list, "everyone", utcnow()))

    small = min(1000, size // 2)
    api_seconds = base_seconds = 0.0
    listing: dict[str, tuple[float, float]] = {}
    paths = {
        "list_id": f"/api/audience/contacts?list_id={sample}",
        "status": "/api/audience/contacts?status=unsubscribed",
    }
    done = 0
    while done < size:
        count = min(CHUNK, size - done, small - done if done < small else CHUNK)
        rows = [_row("c", i) for i in range(done, done + count)]
        started = time.perf_counter()
        await db.write(_baseline_chunk(base_team, base_list, [_row("b", i) for i in range(done, done + count)]))
        base_seconds += time.perf_counter() - started
        body = json.dumps({"contacts": rows, "list_id": api_list}).encode()
        started = time.perf_counter()
        status, answer = await asgi(app, "POST", "/api/audience/contacts/bulk", key, body)
        api_seconds += time.perf_counter() - started
        assert status == 201 and json.loads(answer)["data"]["created"] == count, answer[:300]
        if done == 0:  # the sample list and the unsubscribed contacts: the same 100 at every size
            ids = [c["id"] for c in json.loads(answer)["data"]["contacts"][:SAMPLE]]
            pairs = json.dumps({"contact_ids": ids, "list_ids": [sample]}).encode()
            assert (await asgi(app, "POST", "/api/audience/contacts/lists/bulk", key, pairs))[0] == 200
            for contact_id in ids:
                patch = b'{"status": "unsubscribed"}'
                assert (await asgi(app, "PATCH", f"/api/audience/contacts/{contact_id}", key, patch))[0] == 200
        done += count
        if done in (small, size):
            await _analyze(db)
        if done == small:
            for name, path in paths.items():
                listing[name] = (await _listing(app, key, path, requests), 0.0)
    for name, path in paths.items():
        listing[name] = (listing[name][0], await _listing(app, key, path, requests))

    api_rate, base_rate = size / api_seconds, size / base_seconds
    ratio = api_rate / base_rate
    verdict = "OK" if ratio >= 0.5 else "UNDER TARGET"
    print(f"{label:<10} import {size} contacts: API bulk_create {api_rate:8.0f}/s | bare executemany "
          f"{base_rate:8.0f}/s | ratio {ratio:4.2f}x (target >= 0.5x: {verdict})")  # fmt: skip

    data = SegmentInput(name="three groups", conditions=_conditions())
    actor = Actor(name="bench")
    segment = await db.write(
        lambda conn: audience_service.create_segment(conn, team_id=api_team, data=data, actor=actor, now=utcnow())
    )
    compiled, hand, counts = [], [], set()
    for _ in range(9):
        started = time.perf_counter()
        counts.add(
            await db.read(lambda conn: audience_service.count_segment(conn, team_id=api_team, segment_id=segment.id))
        )
        compiled.append(time.perf_counter() - started)
        started = time.perf_counter()
        counts.add(
            await db.read(
                lambda conn: int(conn.execute(text(HAND_SQL[conn.dialect.name]), {"team": api_team}).scalar_one())
            )
        )
        hand.append(time.perf_counter() - started)
    assert len(counts) == 1, f"the compiled and the hand-written counts differ: {counts}"
    c, h = statistics.median(compiled), statistics.median(hand)
    verdict = "OK" if c <= 1 else "OVER TARGET"
    print(f"{label:<10} segment count (3 groups) over {size}: {c * 1000:7.1f} ms | hand-written SQL "
          f"{h * 1000:7.1f} ms | ratio {c / h:4.2f}x | {counts.pop()} match | target <= 1 s: {verdict}")  # fmt: skip

    for name, (at_small, at_large) in listing.items():
        r = at_large / at_small
        verdict = "OK" if r <= 2 else "OVER TARGET"
        print(f"{label:<10} GET contacts?{name}: p99 at {small} {at_small * 1000:6.2f} ms | at {size} "
              f"{at_large * 1000:6.2f} ms | ratio {r:4.2f}x (target <= 2x: {verdict})")  # fmt: skip

    def plans(conn: Connection) -> dict[str, str]:
        return {
            "list_id": _explain(conn, audience_queries.contacts_query(api_team, list_id=sample)),
            "status": _explain(conn, audience_queries.contacts_query(api_team, status="unsubscribed")),
        }

    for name, plan in (await db.read(plans)).items():
        print(f"{label:<10} EXPLAIN contacts?{name}: {plan}")
    await app.state.rate_limiter.close()
    await db.close()


def _conditions() -> ConditionsInput:
    groups = [{"conditions": [{"field": f, "operator": o, "value": v} for f, o, v in group]} for group in GROUPS]
    return convert({"groups": groups}, ConditionsInput)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="contacts to import (at least 200)")
    parser.add_argument("--requests", type=int, default=200, help="timed listing requests per filter and size")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; in-process ASGI")
    with tempfile.TemporaryDirectory() as tmp:
        await measure(load_settings({"POSTROOM_DATA_DIR": tmp, **UNLIMITED}), "sqlite", args.size, args.requests)
    admin = os.environ.get("POSTROOM_TEST_POSTGRES_URL")
    if admin:
        async with scratch_postgres(admin) as url:
            with tempfile.TemporaryDirectory() as tmp:
                settings = load_settings({"POSTROOM_DATABASE_URL": url, "POSTROOM_DATA_DIR": tmp, **UNLIMITED})
                await measure(settings, "postgresql", args.size, args.requests)


if __name__ == "__main__":
    asyncio.run(main())
