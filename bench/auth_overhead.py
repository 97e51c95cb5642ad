"""Cost of the API guard per request.

Calls the ASGI application in-process (no sockets, so only our code and the framework are measured) and
interleaves two requests that produce the same shape of JSON answer:

- baseline: ``GET /api/health`` (public: no guard at all);
- guarded:  ``GET /api/auth/check`` with a Full Access key carrying a 3-entry IP allowlist (lockout lookup,
  key lookup by digest, status, allowlist match, scope check, the team's rate-limit counters). Every answer must
  be a 200: the rate limit is raised so that it counts every request but refuses none.

The guard's cost is the difference of the medians; the ratio guarded/baseline is printed too. Target: ≤ 100 µs
median. Runs on the embedded SQLite database, and also on PostgreSQL when ``POSTROOM_TEST_POSTGRES_URL`` names
an admin connection.

    python bench/auth_overhead.py [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from postroom.apikeys import service as keys_service
from postroom.app import build_app
from postroom.audit.service import Actor
from postroom.config import Settings, load_settings
from postroom.core.clock import utcnow
from postroom.db.engine import open_database
from postroom.system import defaults
from postroom.teams import service as teams_service

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import asgi_get, scratch_postgres  # noqa: E402

# The guard counts every request against the team's rate limit, as a server would, but the default (1000/second)
# is reached within this benchmark's first second, and a 429 takes the error path instead of the route's.
COUNTED_NEVER_REFUSED = {"POSTROOM_RATE_LIMIT": "1000000/second"}


async def measure(settings: Settings, label: str, requests: int) -> None:
    """The guard's cost on the database of ``settings``, with the rate-limit store a server there would use."""
    db = open_database(settings)
    now = utcnow()
    await db.migrate(lambda conn: None if defaults.ensure_default_team(conn, now=now) else None)
    team_id = await db.read(lambda conn: teams_service.resolve_team(conn, team_id=None))
    created = await db.write(
        lambda conn: keys_service.create_key(
            conn,
            team_id=team_id,
            name="bench",
            permission="full",
            allowed_ips="203.0.113.50, 198.51.100.0/24, 127.0.0.1",
            expires_at=None,
            created_by="bench",
            actor=Actor(name="bench"),
            now=now,
        )
    )
    app = build_app(settings, db)
    auth = [(b"authorization", f"Bearer {created.key}".encode()), (b"user-agent", b"bench")]
    plain = [(b"user-agent", b"bench")]
    for _ in range(500):  # warm up both paths
        assert (await asgi_get(app, "/api/health", plain))[0] == 200
        assert (await asgi_get(app, "/api/auth/check", auth))[0] == 200
    await db.drain()
    baseline: list[float] = []
    guarded: list[float] = []
    statuses: Counter[int] = Counter()
    for _ in range(requests):
        started = time.perf_counter()
        statuses[(await asgi_get(app, "/api/health", plain))[0]] += 1
        baseline.append(time.perf_counter() - started)
        started = time.perf_counter()
        statuses[(await asgi_get(app, "/api/auth/check", auth))[0]] += 1
        guarded.append(time.perf_counter() - started)
    if set(statuses) != {200}:  # a refused request takes another path: it would be measured instead of the guard's
        raise SystemExit(f"{label}: every request must be answered 200, got {dict(statuses)}")
    b, g = statistics.median(baseline), statistics.median(guarded)
    p99 = sorted(guarded)[int(len(guarded) * 0.99)] - sorted(baseline)[int(len(baseline) * 0.99)]
    verdict = "OK" if (g - b) * 1e6 <= 100 else "OVER TARGET"
    print(
        f"{label:<10} baseline median {b * 1e6:7.1f} µs | guarded median {g * 1e6:7.1f} µs | "
        f"guard cost {(g - b) * 1e6:6.1f} µs median, {p99 * 1e6:6.1f} µs p99 | ratio {g / b:4.2f}x | "
        f"target <= 100 µs: {verdict}"
    )
    await app.state.rate_limiter.close()
    await db.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.requests} interleaved requests per path, in-process ASGI"
    )
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"POSTROOM_DATA_DIR": str(Path(tmp)), **COUNTED_NEVER_REFUSED})
        await measure(settings, "sqlite", args.requests)
    admin = os.environ.get("POSTROOM_TEST_POSTGRES_URL")
    if admin:
        async with scratch_postgres(admin) as url:
            with tempfile.TemporaryDirectory() as tmp:  # the server secret goes to the data directory
                settings = load_settings(
                    {"POSTROOM_DATABASE_URL": url, "POSTROOM_DATA_DIR": tmp, **COUNTED_NEVER_REFUSED}
                )
                await measure(settings, "postgresql", args.requests)


if __name__ == "__main__":
    asyncio.run(main())
