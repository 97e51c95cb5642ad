"""Whether reading grows with the table: ``GET /api/emails`` and ``GET /api/emails/events`` at several numbers of
stored messages, and ``POST /api/emails`` alone and beside a client looping on ``GET /api/emails``.

For each ``--sizes`` entry (default 10000 and 1000000) a new database (SQLite file, or with ``--database
postgres`` a new database on the cluster of ``POSTROOM_TEST_POSTGRES_URL``, dropped afterwards) is made by
``postroom migrate`` and filled, not through the API but with one bulk insert, with that many messages, each with
a recipient, an injection and a delivery event (so twice as many events as messages) and their hourly event
counters, spread evenly over the last nine days (inside the listings' default ten-day window, so every listing
counts them all). The rows copy one real send made through the API first. Then ``python -m postroom api`` (the API
alone, per-team rate limits lifted) serves it:

- listings: ``--requests`` sequential requests each of ``GET /api/emails`` and ``GET /api/emails/events`` with
  their default filters, after a few unmeasured ones; p50 and p99 per size, and the p50 at the largest size
  over the p50 at the smallest (target <= 2x; the same run, so the same machine load).
- sends: at the largest size, ``--senders`` connections send ``POST /api/emails`` for ``--duration`` s, alone, then
  again while one other process loops on ``GET /api/emails`` (one request at a time, as fast as it is answered);
  p50 beside the loop over p50 alone (target <= 2x).

    .venv/bin/python bench/growth.py [--sizes 10000,1000000] [--database sqlite|postgres] [--requests 100]
        [--duration 10] [--senders 4] [--tmp-dir DIR]

CI smokes it with ``--sizes 200,2000 --requests 20 --duration 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import filesystem_of, free_port, postroom_cli, stop_popen  # noqa: E402
from send_throughput import (  # noqa: E402
    SENDER_DOMAIN,
    UNLIMITED,
    percentile,
    run_database,
    send_body,
    subprocess_env,
    wait_http_ready,
)

FILL_DAYS = 9
BATCH = 20_000


# -- filling the database ---------------------------------------------------------------------------------------


def _rows(template: dict[str, Any], team_id: int, count: int, now: datetime) -> Iterator[list[tuple[Any, ...]]]:
    """Batches of (message, recipient, injection event, delivery event) rows copying ``template`` (a messages
    row), ``count`` messages spread evenly over the last ``FILL_DAYS`` days, oldest first."""
    step = timedelta(days=FILL_DAYS) / count
    start = now - timedelta(days=FILL_DAYS)
    batch: list[tuple[Any, ...]] = []
    for n in range(count):
        at = start + step * n
        message_id, request_id = f"msg_fill{n:012d}", str(2 * 10**18 + n)
        address = f"customer-{n % 5000}@example.test"
        batch.append((message_id, request_id, at, address, n + 1))
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _hourly(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _sqlite_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")[:26]


def fill_sqlite(path: str, count: int, now: datetime) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    # Nobody else has the file open: no WAL copy of every page and no fsync while filling (not what is measured).
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA synchronous=OFF")
    message = conn.execute("SELECT * FROM messages LIMIT 1")
    columns = [d[0] for d in message.description]
    template = dict(zip(columns, message.fetchone(), strict=True))
    team_id = int(template["team_id"])
    counters: dict[tuple[str, str], int] = {}
    conn.execute("BEGIN IMMEDIATE")
    for batch in _rows(template, team_id, count, now):
        conn.executemany(
            f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",  # noqa: S608
            [
                tuple({**template, "id": m, "request_id": r, "created_at": _sqlite_text(at)}[c] for c in columns)
                for m, r, at, _, _ in batch
            ],
        )
        conn.executemany(
            "INSERT INTO recipients (id, message_id, team_id, email, rcpt_type, domain, status, attempts, updated_at) "
            "VALUES (?, ?, ?, ?, 'to', 'example.test', 'delivered', 1, ?)",
            [(10**9 + n, m, team_id, a, _sqlite_text(at)) for m, _, at, a, n in batch],
        )
        events = []
        for m, _, at, a, n in batch:
            for kind, offset in (("injection", 0), ("delivery", 1)):
                moment = at + timedelta(milliseconds=offset)
                events.append((f"9{n:012d}{offset}", team_id, m, 10**9 + n, kind, _sqlite_text(moment), a))
                key = (kind, _sqlite_text(_hourly(moment)))
                counters[key] = counters.get(key, 0) + 1
        conn.executemany(
            "INSERT INTO email_events (event_id, team_id, message_id, recipient_id, type, occurred_at, rcpt_to, "
            'details) VALUES (?, ?, ?, ?, ?, ?, ?, \'{"rcpt_type":"to"}\')',
            events,
        )
    conn.executemany(
        "INSERT INTO event_counts (team_id, type, hour_start, shard, count) VALUES (?, ?, ?, 0, ?) "
        "ON CONFLICT (team_id, type, hour_start, shard) DO UPDATE SET count = count + excluded.count",
        [(team_id, kind, hour, n) for (kind, hour), n in counters.items()],
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")  # as Postroom runs it
    conn.close()


def fill_postgres(url: str, count: int, now: datetime) -> None:
    import asyncpg

    async def fill() -> None:
        conn = await asyncpg.connect(url)
        try:
            template = dict(await conn.fetchrow("SELECT * FROM messages LIMIT 1"))
            columns = list(template)
            team_id = int(template["team_id"])
            counters: dict[tuple[str, datetime], int] = {}
            async with conn.transaction():
                for batch in _rows(template, team_id, count, now):
                    await conn.copy_records_to_table(
                        "messages",
                        columns=columns,
                        records=[
                            tuple({**template, "id": m, "request_id": r, "created_at": at}[c] for c in columns)
                            for m, r, at, _, _ in batch
                        ],
                    )
                    await conn.copy_records_to_table(
                        "recipients",
                        columns=["id", "message_id", "team_id", "email", "rcpt_type", "domain", "status", "attempts",
                                 "updated_at"],
                        records=[
                            (10**9 + n, m, team_id, a, "to", "example.test", "delivered", 1, at)
                            for m, _, at, a, n in batch
                        ],
                    )  # fmt: skip
                    events = []
                    for m, _, at, a, n in batch:
                        for kind, offset in (("injection", 0), ("delivery", 1)):
                            moment = at + timedelta(milliseconds=offset)
                            events.append((f"9{n:012d}{offset}", team_id, m, 10**9 + n, kind, moment, a,
                                           '{"rcpt_type":"to"}'))  # fmt: skip
                            key = (kind, _hourly(moment))
                            counters[key] = counters.get(key, 0) + 1
                    await conn.copy_records_to_table(
                        "email_events",
                        columns=["event_id", "team_id", "message_id", "recipient_id", "type", "occurred_at",
                                 "rcpt_to", "details"],
                        records=events,
                    )  # fmt: skip
                await conn.executemany(
                    "INSERT INTO event_counts (team_id, type, hour_start, shard, count) VALUES ($1, $2, $3, 0, $4) "
                    "ON CONFLICT (team_id, type, hour_start, shard) DO UPDATE SET count = event_counts.count + "
                    "excluded.count",
                    [(team_id, kind, hour, n) for (kind, hour), n in counters.items()],
                )
            await conn.execute("ANALYZE")
        finally:
            await conn.close()

    asyncio.run(fill())


# -- load -------------------------------------------------------------------------------------------------------


def _listing_loop(url: str, key: str) -> None:
    """``--list-loop``: GET ``url`` one request at a time until terminated."""
    import httpx

    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        while True:
            client.get(url)


def measure_gets(url: str, key: str, requests: int) -> list[float]:
    import httpx

    timings = []
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for n in range(requests + 5):
            started = time.perf_counter()
            response = client.get(url)
            took = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
            if n >= 5:  # the first few warm the caches
                timings.append(took)
    return sorted(timings)


def measure_sends(url: str, key: str, senders: int, duration: float) -> list[float]:
    import httpx

    body = send_body()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def run() -> list[float]:
        timings: list[float] = []
        end = time.monotonic() + duration

        async def sender() -> None:
            async with httpx.AsyncClient(headers=headers, timeout=60) as client:
                while time.monotonic() < end:
                    started = time.perf_counter()
                    response = await client.post(url, content=body)
                    if response.status_code != 200:
                        raise RuntimeError(f"POST {url}: {response.status_code} {response.text[:300]}")
                    timings.append(time.perf_counter() - started)

        await asyncio.gather(*(sender() for _ in range(senders)))
        return sorted(timings)

    return asyncio.run(run())


def _ms(value: float) -> str:
    return f"{value * 1000:8.2f} ms"


def run_size(args: argparse.Namespace, tmp: Path, size: int, measure_sending: bool) -> dict[str, Any]:
    label = f"growth_{size}"
    log_path = tmp / f"{label}.log"
    with run_database(args, tmp, label) as (db_env, db), contextlib.ExitStack() as stack:
        env = subprocess_env(
            {
                **db_env,
                "POSTROOM_MAIL_HOSTNAME": "postroom.bench",
                "POSTROOM_RATE_LIMIT": UNLIMITED,
                "POSTROOM_SEND_RATE_LIMIT": UNLIMITED,
            }
        )
        postroom_cli(env, "migrate", timeout=120)
        postroom_cli(env, "domains", "add", SENDER_DOMAIN, "--approve")
        key = json.loads(postroom_cli(env, "keys", "create", "--name", "bench", "--json"))["key"]
        port = free_port()
        base = f"http://127.0.0.1:{port}/api"

        def start_api() -> subprocess.Popen[bytes]:
            log = stack.enter_context(log_path.open("ab"))
            server = subprocess.Popen(
                [sys.executable, "-m", "postroom", "api", "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
            wait_http_ready(f"{base}/health", server, log_path)
            return server

        server = start_api()
        import httpx

        sent = httpx.post(  # one real send: the row the fill copies
            f"{base}/emails", content=send_body(), headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        sent.raise_for_status()
        stop_popen(server)
        started = time.monotonic()
        now = datetime.now(UTC)
        (fill_postgres if args.database == "postgres" else fill_sqlite)(db, size, now)
        print(f"  {size:>9,} messages: filled in {time.monotonic() - started:.0f} s (bulk insert)")
        server = start_api()
        stack.callback(stop_popen, server)
        result: dict[str, Any] = {}
        for name, path in (("emails", "/emails"), ("events", "/emails/events")):
            timings = measure_gets(base + path, key, args.requests)
            result[name] = timings
            print(f"  {size:>9,} messages: GET /api{path:<14} p50 {_ms(percentile(timings, 0.5))}, "
                  f"p99 {_ms(percentile(timings, 0.99))} ({len(timings)} requests)")  # fmt: skip
        if measure_sending:
            alone = measure_sends(f"{base}/emails", key, args.senders, args.duration)
            looping = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--list-loop", f"{base}/emails", "--key", key],
                env=subprocess_env({}),
            )
            try:
                measure_gets(base + "/emails", key, 0)  # the loop has a listing in flight before sends start
                time.sleep(0.5)
                beside = measure_sends(f"{base}/emails", key, args.senders, args.duration)
            finally:
                stop_popen(looping)
            result["sends"] = (alone, beside)
            for name, timings in (("alone", alone), ("beside a GET /api/emails loop", beside)):
                print(f"  {size:>9,} messages: POST /api/emails {name}: p50 {_ms(percentile(timings, 0.5))}, "
                      f"p99 {_ms(percentile(timings, 0.99))}, {len(timings) / args.duration:.0f} req/s")  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="stored messages per run, comma-separated")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--requests", type=int, default=100, help="measured requests per listing (default 100)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sending, alone and beside")
    parser.add_argument("--senders", type=int, default=4, help="concurrent send connections (default 4)")
    parser.add_argument("--tmp-dir", default=None, help="where the databases go (default: the system temp dir)")
    parser.add_argument("--list-loop", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--key", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list_loop is not None:
        _listing_loop(args.list_loop, args.key)
        return
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if not sizes or sizes[0] < 1 or args.requests < 1 or args.duration <= 0 or args.senders < 1:
        parser.error("need sizes >= 1, --requests >= 1, --duration > 0, --senders >= 1")
    args.admin_url = os.environ.get("POSTROOM_TEST_POSTGRES_URL", "")
    if args.database == "postgres" and not args.admin_url:
        parser.error("--database postgres needs POSTROOM_TEST_POSTGRES_URL (an admin URL of a PostgreSQL cluster)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="postroom-growth-", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"database: {args.database}, in {tmp} ({filesystem_of(tmp)}); "
            f"sizes {', '.join(f'{s:,}' for s in sizes)} messages (2 events each)"
        )
        results = {size: run_size(args, tmp, size, measure_sending=size == sizes[-1]) for size in sizes}
    small, large = results[sizes[0]], results[sizes[-1]]
    for name, path in (("emails", "GET /api/emails"), ("events", "GET /api/emails/events")):
        ratio = percentile(large[name], 0.5) / percentile(small[name], 0.5)
        verdict = "OK" if ratio <= 2.0 else "OVER TARGET"
        print(f"ratio {path} p50 at {sizes[-1]:,} / at {sizes[0]:,}: {ratio:5.2f}x (target <= 2x): {verdict}")
    alone, beside = large["sends"]
    ratio = percentile(beside, 0.5) / percentile(alone, 0.5)
    verdict = "OK" if ratio <= 2.0 else "OVER TARGET"
    print(f"ratio POST /api/emails p50 beside a listing loop / alone at {sizes[-1]:,}: {ratio:5.2f}x "
          f"(target <= 2x): {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
