"""Requests per second of ``POST /api/emails`` on a live Postroom, against a naive durable baseline.

Three HTTP servers run, one after the other, as their own processes on 127.0.0.1 and get the same load:

- postroom serve: ``python -m postroom serve`` on the embedded SQLite database (WAL, ``synchronous=FULL``, one
  group-commit writer thread), a Full Access key made with ``postroom keys create`` and the sending domain
  sender.test (``postroom domains add --approve``). Every request goes through the whole path: guard (key
  lookup, rate limit), validation, the ``accept`` unit of work (message, recipient, event, work item), commit.
  The embedded worker delivers what was accepted to an aiosmtpd sink on loopback that accepts and discards
  everything (``POSTROOM_RELAY_URL``), as it would in production, so its CPU use is part of the measurement.
- postroom api: the same, as ``python -m postroom api``: the API alone, no worker in the process (how a busy
  installation runs, with ``postroom worker`` elsewhere). Like the baseline, it does no delivery.
  Both runs lift the per-team rate limits (``POSTROOM_RATE_LIMIT``/``POSTROOM_SEND_RATE_LIMIT``, 1000/second by
  default), which would otherwise cap the measurement; the limiter still runs on every request.
- baseline: the issue's "bare Starlette endpoint doing the same JSON parse and the same durable insert on the
  same database", served by the same uvicorn in the same way (uvloop + httptools, access log off). It decodes the
  body with ``msgspec.json.decode`` (the parser Litestar uses), checks ``to`` is a non-empty list, and writes the
  rows Postroom's accept writes (message, recipient per address, injection event, delivery work item per domain)
  into a database made by ``postroom migrate`` (the same tables and indexes; WAL, ``synchronous=FULL``,
  ``foreign_keys=ON``), with its own ``BEGIN IMMEDIATE``/``COMMIT`` per request on one connection, inline on
  the event loop, as a naive app would. No authentication, no validation, no delivery.

Load: wrk (``--load wrk``, the default where it is installed: ``apt-get install wrk``) keeps ``--concurrency``
keep-alive connections (default 32) busy from ``--clients`` threads (default 1), each connection with one request
at a time: a ``--warmup`` run (default 2 s, not counted), then the measured ``--duration`` run (default 10 s). Any
answer but 2xx counts as a failure; p50/p99 are wrk's, over the measured run. ``--load httpx`` uses ``--clients``
Python processes instead, each an asyncio program (on uvloop) with one ``httpx.AsyncClient`` per connection; it
needs about ten times wrk's CPU per request, which on a small machine it takes from the server under test. The CPU
time the server and the load generator used during the measured run is printed as a share of one core, so a
saturated side shows. After each run the rows in the database are compared with the 200s the load generator saw:
every 200 must be a committed row (wrk stops with requests still open, so up to one per connection per run may be
committed unseen). With wrk, each postroom run is followed by a paced one (``--paced``, default 0.5): every
connection pauses before each request so that together they ask for half the rate just measured (for ``serve``,
once its worker has delivered what the full-load run left queued), and p50 and p99 there are checked against the
latency target (at half the maximum rate, p50 <= 10 ms and p99 <= 50 ms). The pauses are random
(exponential, so requests arrive independently, as from many clients); equal pauses would keep the connections in
step, each batch's answers starting the next burst together.

    .venv/bin/python bench/send_throughput.py [--duration 10] [--concurrency 32] [--clients 1] [--warmup 2]
        [--load wrk|httpx] [--database sqlite|postgres]

``--database postgres`` runs all three on PostgreSQL instead, each on a new database of the cluster named by
``POSTROOM_TEST_POSTGRES_URL`` (an admin URL; dropped afterwards): Postroom on its asyncpg pools
(``synchronous_commit=on``), and the baseline doing the same four inserts in one transaction per request on an
asyncpg pool of 8, so that its concurrent commits share WAL flushes as PostgreSQL does for any client.

Target: postroom/baseline >= 1.0x (printed for both postroom runs).

The target counts on group commit: the baseline waits for one flush per request, Postroom for one per batch. How
much that pays depends on how long the disk takes to flush. ``--fsync-delay-ms`` runs both servers under strace,
which returns each of their ``fsync``/``fdatasync`` calls that much later than the disk did (no other system call
is stopped), to measure the same code as on a slower disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import (  # noqa: E402
    filesystem_of,
    free_port,
    run_admin_sql,
    serve_smtp_until,
    served_pid,
    slow_sync,
    stop_mp,
    stop_server,
    tree_cpu_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
MAIL_HOSTNAME = "postroom.bench"
SENDER_DOMAIN = "sender.test"


# -- helpers ----------------------------------------------------------------------------------------------------


def subprocess_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
    env.update(extra)
    return env


def wait_http_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer {url} within {timeout}s:\n{log_path.read_text()[-3000:]}")


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# -- the SMTP sink (its own process: accepts and discards, counts) ----------------------------------------------


def _sink_main(port_box: Any, delivered: Any, stop: Any) -> None:

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with delivered.get_lock():
                delivered.value += 1
            return "250 2.0.0 OK discarded"

    def report(port: int) -> None:
        port_box.value = port

    serve_smtp_until(Discard(), stop, report)


@contextlib.contextmanager
def smtp_sink(ctx: Any) -> Iterator[tuple[int, Any, Any]]:
    """(port, delivered counter, process) of a discard-everything SMTP server in its own process."""
    port_box, delivered, stop = ctx.Value("i", 0), ctx.Value("q", 0), ctx.Event()
    process = ctx.Process(target=_sink_main, args=(port_box, delivered, stop), name="bench-smtp-sink", daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 30
        while port_box.value == 0 and time.monotonic() < deadline and process.is_alive():
            time.sleep(0.02)
        if port_box.value <= 0:
            raise RuntimeError("the SMTP sink did not start")
        yield port_box.value, delivered, process
    finally:
        stop.set()
        stop_mp(process)


# -- the baseline server (run as ``--serve-baseline PORT --baseline-db PATH``) ---------------------------------

# The rows Postroom's accept writes for a one-recipient send (message, recipient, injection event, delivery work
# item), into the same tables: the baseline database is made by ``postroom migrate``.
BASELINE_INSERTS = (
    "INSERT INTO messages (id, request_id, team_id, project_id, from_email, from_name, sending_domain, subject, "
    "message_id_header, tag, content, transactional, msg_size, created_at) "
    "VALUES (?, ?, 1, 1, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
    "INSERT INTO recipients (message_id, team_id, email, rcpt_type, domain, status, attempts, updated_at) "
    "VALUES (?, 1, ?, 'to', ?, 'queued', 0, ?) RETURNING id",
    "INSERT INTO email_events (event_id, team_id, message_id, recipient_id, type, occurred_at, rcpt_to, details) "
    "VALUES (?, 1, ?, ?, 'injection', ?, ?, '{\"rcpt_type\":\"to\"}')",
    "INSERT INTO work_items (kind, ref, status, attempts, run_at, created_at, updated_at) "
    "VALUES ('deliver', ?, 'queued', 0, ?, ?, ?)",
)
BASELINE_INSERTS_PG = (  # the same, in PostgreSQL's notation
    "INSERT INTO messages (id, request_id, team_id, project_id, from_email, from_name, sending_domain, subject, "
    "message_id_header, tag, content, transactional, msg_size, created_at) "
    "VALUES ($1, $2, 1, 1, $3, $4, $5, $6, $7, $8, $9, true, $10, $11)",
    "INSERT INTO recipients (message_id, team_id, email, rcpt_type, domain, status, attempts, updated_at) "
    "VALUES ($1, 1, $2, 'to', $3, 'queued', 0, $4) RETURNING id",
    "INSERT INTO email_events (event_id, team_id, message_id, recipient_id, type, occurred_at, rcpt_to, details) "
    "VALUES ($1, 1, $2, $3, 'injection', $4, $5, '{\"rcpt_type\":\"to\"}')",
    "INSERT INTO work_items (kind, ref, status, attempts, run_at, created_at, updated_at) "
    "VALUES ('deliver', $1, 'queued', 0, $2, $3, $4)",
)


def baseline_app(db: str) -> Any:
    return postgres_baseline_app(db) if db.startswith("postgresql") else sqlite_baseline_app(db)


def _baseline_send_values(data: dict[str, Any], now: Any) -> tuple[str, str, tuple[Any, ...]]:
    message_id, request_id = f"msg_{secrets.token_hex(12)}", _numeric_id()
    sender = str(data.get("from", ""))
    values = (
        message_id, request_id, sender, data.get("from_name"), sender.rpartition("@")[2], data.get("subject", ""),
        f"<{request_id}@{MAIL_HOSTNAME}>", data.get("tag"), _json_text(data),
        len(data.get("html", "")) + len(data.get("text", "")), now,
    )  # fmt: skip
    return message_id, request_id, values


def _numeric_id() -> str:
    return str(10**18 + secrets.randbelow(9 * 10**18))


def _json_text(data: Any) -> str:
    import msgspec

    return str(msgspec.json.encode(data).decode())


def postgres_baseline_app(url: str) -> Any:
    """The baseline on PostgreSQL: the four inserts in one transaction per request through an asyncpg pool of 8,
    so that concurrent commits share WAL flushes, as PostgreSQL does for any client."""
    import asyncpg

    insert_message, insert_recipient, insert_event, insert_item = BASELINE_INSERTS_PG
    pools: list[Any] = []

    async def store(data: dict[str, Any]) -> str:
        if not pools:
            pool = await asyncpg.create_pool(url, min_size=8, max_size=8)
            if pools:  # another request made one meanwhile
                await pool.close()
            else:
                pools.append(pool)
        now = datetime.now(UTC)
        message_id, request_id, values = _baseline_send_values(data, now)
        async with pools[0].acquire() as conn, conn.transaction():
            await conn.execute(insert_message, *values)
            for address, domain in _recipients(data):
                recipient_id = await conn.fetchval(insert_recipient, message_id, address, domain, now)
                await conn.execute(insert_event, _numeric_id(), message_id, recipient_id, now, address)
            for domain in sorted({domain for _, domain in _recipients(data)}):
                await conn.execute(insert_item, f"{message_id}|{domain}", now, now, now)
        return request_id

    return _baseline_starlette(store)


def sqlite_baseline_app(db_path: str) -> Any:
    """The baseline on SQLite: the four inserts in one ``BEGIN IMMEDIATE``/``COMMIT`` per request on one
    connection, inline on the event loop, as a naive app would."""
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    insert_message, insert_recipient, insert_event, insert_item = BASELINE_INSERTS

    async def store(data: dict[str, Any]) -> str:
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        message_id, request_id, values = _baseline_send_values(data, now)
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(insert_message, values)
            for address, domain in _recipients(data):
                (recipient_id,) = conn.execute(insert_recipient, (message_id, address, domain, now)).fetchone()
                conn.execute(insert_event, (_numeric_id(), message_id, recipient_id, now, address))
            for domain in sorted({domain for _, domain in _recipients(data)}):
                conn.execute(insert_item, (f"{message_id}|{domain}", now, now, now))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return request_id

    return _baseline_starlette(store)


def _recipients(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(address, address.rpartition("@")[2]) for address in data["to"]]


def _baseline_starlette(store: Callable[[dict[str, Any]], Awaitable[str]]) -> Any:
    """The bare endpoint around ``store`` (which commits a parsed send and returns its request id)."""
    import msgspec
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def send(request: Request) -> Response:
        try:
            data = msgspec.json.decode(await request.body())
        except msgspec.DecodeError:
            return JSONResponse({"message": "Invalid JSON."}, status_code=422)
        if not isinstance(data, dict) or not isinstance(data.get("to"), list) or not data["to"]:
            return JSONResponse({"message": "The to field is required."}, status_code=422)
        request_id = await store(data)
        body = {"request_id": request_id, "accepted": len(data["to"]), "rejected": 0}
        return JSONResponse({"message": "Email queued for delivery.", "data": body})

    return Starlette(routes=[Route("/health", health), Route("/api/emails", send, methods=["POST"])])


def serve_baseline(port: int, db_path: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        baseline_app(db_path),
        host="127.0.0.1",
        port=port,
        proxy_headers=False,
        access_log=False,
        log_level="warning",
        server_header=False,
        lifespan="off",
    )
    uvicorn.Server(config).run()


# -- the load generator (``--clients`` processes) ---------------------------------------------------------------


def _load_main(
    url: str,
    headers: dict[str, str],
    body: bytes,
    connections: int,
    warmup: float,
    duration: float,
    ready: Any,
    go: Any,
    start_box: Any,
    results: Any,
) -> None:
    import httpx

    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        ok_total = 0
        cpu: dict[str, float] = {}
        # One client (pool of one connection) per simulated user: a single pool shared by 32 users spends its
        # time in httpcore's pool bookkeeping (measured here: ~370 req/s against the baseline at 100% of a core,
        # against ~900 req/s at 60% with one pool per user).
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with contextlib.AsyncExitStack() as clients:
            pool = [
                await clients.enter_async_context(httpx.AsyncClient(limits=limits, timeout=30, headers=headers))
                for _ in range(connections)
            ]
            ready.put(os.getpid())
            await asyncio.to_thread(go.wait)
            start = start_box.value
            measure_from, end = start + warmup, start + warmup + duration
            await asyncio.sleep(max(0.0, start - time.monotonic()))

            async def clock() -> None:
                await asyncio.sleep(max(0.0, measure_from - time.monotonic()))
                cpu["from"] = time.process_time()
                await asyncio.sleep(max(0.0, end - time.monotonic()))
                cpu["to"] = time.process_time()

            async def user(client: httpx.AsyncClient) -> None:
                nonlocal ok_total
                while True:
                    started = time.monotonic()
                    if started >= end:
                        return
                    try:
                        response = await client.post(url, content=body)
                        status = str(response.status_code)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    finished = time.monotonic()
                    if status == "200":
                        ok_total += 1
                    if started >= measure_from and finished <= end:
                        if status == "200":
                            latencies.append(finished - started)
                        else:
                            failures[status] += 1

            await asyncio.gather(clock(), *(user(client) for client in pool))
        return {
            "latencies": latencies,
            "failures": dict(failures),
            "ok_total": ok_total,
            "cpu": cpu.get("to", 0.0) - cpu.get("from", 0.0),
        }

    try:
        results.put(runner(run()))
    except BaseException as exc:
        results.put({"error": repr(exc)})
        raise


@dataclass
class LoadResult:
    rps: float
    ok: int
    ok_total: int
    p50: float
    p99: float
    failures: dict[str, int] = field(default_factory=dict)
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    # Requests that may have been committed without the client reading the 200: wrk stops mid-request.
    open_at_end: int = 0
    # With --paced: req/s, p50 and p99 when the connections ask for a share of ``rps`` only.
    paced: tuple[float, float, float] | None = None

    def committed(self, rows: int) -> str:
        """Whether ``rows`` committed agree with the 200s seen: every 200 is a row, and at most the requests
        still open when a run stopped are rows nobody saw answered."""
        if rows < self.ok_total:
            return f"MISMATCH: {self.ok_total - rows} answered 200 and not committed"
        if rows - self.ok_total > self.open_at_end:
            return f"MISMATCH: {rows - self.ok_total} rows more than 200s seen"
        extra = rows - self.ok_total
        return "OK" + (f"; {extra} more were open when a run stopped" if extra else "")


def run_load(
    ctx: Any, url: str, headers: dict[str, str], body: bytes, args: argparse.Namespace, server_pid: int
) -> LoadResult:
    """The load of ``args`` on ``url``: wrk (``--load wrk``) or httpx client processes (``--load httpx``)."""
    if args.load == "wrk":
        return run_wrk(url, headers, body, args, server_pid)
    return run_httpx(ctx, url, headers, body, args, server_pid)


# wrk's own report is for people; this one is for ``run_wrk``. Latencies are in microseconds, the duration too.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read("*a")
for line in io.open(os.getenv("BENCH_HEADERS"), "rb"):lines() do
  local name, value = line:match("^([^:]+): (.*)$")
  if name then wrk.headers[name] = value end
end
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
if pause > 0 then
  math.randomseed(os.time())
  -- Each connection waits before each request: a random pause (exponential, mean ``pause``), so that requests
  -- arrive independently, as from many clients, instead of in step after each batch's answers.
  delay = function() return math.floor(-pause * math.log(1 - math.random()) + 0.5) end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %d %d %d %d %d %d %d %d %d\\n", summary.duration, summary.requests, e.status,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def _wrk(
    url: str, files: dict[str, Path], args: argparse.Namespace, seconds: float, delay_ms: int = 0
) -> dict[str, int]:
    completed = subprocess.run(
        [
            "wrk",
            f"--threads={args.clients}",
            f"--connections={args.concurrency}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=30s",
            f"--script={files['script']}",
            url,
        ],
        env={
            **os.environ,
            "BENCH_BODY": str(files["body"]),
            "BENCH_HEADERS": str(files["headers"]),
            "BENCH_DELAY_MS": str(delay_ms),
        },
        capture_output=True,
        text=True,
        timeout=seconds + 120,
        check=True,
    )
    line = next((x for x in completed.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    names = ("duration", "requests", "status", "connect", "read", "write", "timeout", "p50", "p99")
    return dict(zip(names, map(int, line.split()[1:]), strict=True))


@contextlib.contextmanager
def _wrk_files(headers: dict[str, str], body: bytes) -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as folder:
        files = {name: Path(folder) / name for name in ("script", "body", "headers")}
        files["script"].write_text(WRK_SCRIPT)
        files["body"].write_bytes(body)
        files["headers"].write_text("".join(f"{name}: {value}\n" for name, value in headers.items()))
        yield files


def run_paced(
    url: str, headers: dict[str, str], body: bytes, args: argparse.Namespace, full_rate: float
) -> tuple[int, float, float, float]:
    """2xx answers, requests per second, p50 and p99 (seconds) when each connection pauses before each request (a
    random time around a mean) so that together they ask for ``args.paced`` of ``full_rate``. A 2 s run first
    measures how long a request takes at that load, and the mean pause is shortened by that much."""
    cycle_ms = args.concurrency / (args.paced * full_rate) * 1000  # each connection's time per request
    with _wrk_files(headers, body) as files:
        probe = _wrk(url, files, args, 2, delay_ms=round(cycle_ms))
        busy_ms = args.concurrency / max(1.0, probe["requests"] / (probe["duration"] / 1e6)) * 1000 - cycle_ms
        run = _wrk(url, files, args, args.duration, delay_ms=max(1, round(cycle_ms - max(0.0, busy_ms))))
    seconds = run["duration"] / 1e6
    ok = probe["requests"] - probe["status"] + run["requests"] - run["status"]
    return ok, (run["requests"] - run["status"]) / seconds, run["p50"] / 1e6, run["p99"] / 1e6


def run_wrk(url: str, headers: dict[str, str], body: bytes, args: argparse.Namespace, server_pid: int) -> LoadResult:
    """wrk (C, one event loop per ``--clients`` thread) keeps ``--concurrency`` connections busy: a warm-up run, then
    the measured one. It costs a fraction of the CPU per request that an httpx client does, so on a small machine
    the server under test keeps more of the cores. Every response that is not 2xx counts as a failure."""
    with _wrk_files(headers, body) as files:
        warm = _wrk(url, files, args, args.warmup) if args.warmup > 0 else None
        children_from = os.times()
        server_from = tree_cpu_seconds(server_pid)
        run = _wrk(url, files, args, args.duration)
        server_to = tree_cpu_seconds(server_pid)
        children_to = os.times()
    seconds = run["duration"] / 1e6
    ok = run["requests"] - run["status"]
    failures = {"non-2xx": run["status"]} if run["status"] else {}
    failures.update({name: run[name] for name in ("connect", "read", "write", "timeout") if run[name]})
    client_cpu = (children_to.children_user + children_to.children_system) - (
        children_from.children_user + children_from.children_system
    )
    return LoadResult(
        rps=ok / seconds,
        ok=ok,
        ok_total=ok + (warm["requests"] - warm["status"] if warm else 0),
        p50=run["p50"] / 1e6,
        p99=run["p99"] / 1e6,
        failures=failures,
        client_cpu=client_cpu / seconds,
        server_cpu=(server_to - server_from) / seconds,
        open_at_end=args.concurrency * (2 if warm else 1),
    )


def run_httpx(
    ctx: Any, url: str, headers: dict[str, str], body: bytes, args: argparse.Namespace, server_pid: int
) -> LoadResult:
    ready, results, go, start_box = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    per_client = [args.concurrency // args.clients + (i < args.concurrency % args.clients) for i in range(args.clients)]
    processes = [
        ctx.Process(
            target=_load_main,
            args=(url, headers, body, n, args.warmup, args.duration, ready, go, start_box, results),
            name=f"bench-load-{i}",
            daemon=True,
        )
        for i, n in enumerate(per_client)
    ]
    with contextlib.ExitStack() as stack:
        for process in processes:
            process.start()
            stack.callback(stop_mp, process)
        for _ in processes:
            ready.get(timeout=60)
        start = time.monotonic() + 0.2
        start_box.value = start
        go.set()
        time.sleep(max(0.0, start + args.warmup - time.monotonic()))
        server_from = tree_cpu_seconds(server_pid)
        time.sleep(max(0.0, start + args.warmup + args.duration - time.monotonic()))
        server_to = tree_cpu_seconds(server_pid)
        outcomes = [results.get(timeout=120) for _ in processes]
    errors = [o["error"] for o in outcomes if "error" in o]
    if errors:
        raise RuntimeError(f"load generator failed: {errors}")
    latencies = sorted(x for o in outcomes for x in o["latencies"])
    failures: Counter[str] = Counter()
    for o in outcomes:
        failures.update(o["failures"])
    return LoadResult(
        rps=len(latencies) / args.duration,
        ok=len(latencies),
        ok_total=sum(o["ok_total"] for o in outcomes),
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        failures=dict(failures),
        client_cpu=sum(o["cpu"] for o in outcomes) / args.duration,
        server_cpu=(server_to - server_from) / args.duration,
    )


def send_body() -> bytes:
    """A typical transactional send (~1 KB): one recipient, subject, HTML and text parts."""
    paragraph = "Your order has shipped and is on its way. Track it from your account page at any time. "
    return json.dumps(
        {
            "from": f"orders@{SENDER_DOMAIN}",
            "from_name": "Bench Shop",
            "to": ["customer@example.test"],
            "subject": "Your order has shipped",
            "html": "<html><body>" + "".join(f"<p>{paragraph}</p>" for _ in range(4)) + "</body></html>",
            "text": "\n\n".join(paragraph for _ in range(4)),
            "tag": "bench",
        }
    ).encode()


def report(label: str, result: LoadResult) -> None:
    failed = ", ".join(f"{k}: {v}" for k, v in sorted(result.failures.items())) or "none"
    print(
        f"{label:<9} {result.rps:8.1f} req/s | p50 {result.p50 * 1000:7.2f} ms | p99 {result.p99 * 1000:7.2f} ms | "
        f"{result.ok} x 200 in window, other: {failed} | CPU: server {result.server_cpu:4.0%}, "
        f"load generator {result.client_cpu:4.0%} of one core"
    )
    if result.paced is not None:
        rate, p50, p99 = result.paced
        verdict = "OK" if p50 <= PACED_P50 and p99 <= PACED_P99 else "OVER TARGET"
        print(
            f"{'':<9} {rate:8.1f} req/s | p50 {p50 * 1000:7.2f} ms | p99 {p99 * 1000:7.2f} ms | paced at "
            f"{rate / result.rps:.0%} of the rate above (target at half the maximum rate: p50 <= "
            f"{PACED_P50 * 1000:g} ms, p99 <= {PACED_P99 * 1000:g} ms): {verdict}"
        )


def count_rows(db: str, table: str) -> tuple[int, str]:
    """Rows in ``table`` of the SQLite file or PostgreSQL database ``db``, and the setting that makes them durable."""
    if db.startswith("postgresql"):
        return asyncio.run(_count_postgres_rows(db, table))
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608 - our own table names
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        return rows, f"journal_mode={mode}"
    finally:
        conn.close()


async def _count_postgres_rows(url: str, table: str) -> tuple[int, str]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608 - our own table names
        return rows, f"synchronous_commit={await conn.fetchval('SHOW synchronous_commit')}"
    finally:
        await conn.close()


@contextlib.contextmanager
def run_database(args: argparse.Namespace, tmp: Path, label: str) -> Iterator[tuple[dict[str, str], str]]:
    """A new database for one run: the environment that points postroom commands at it, and where it is (a
    SQLite file, or a PostgreSQL URL on the cluster of ``POSTROOM_TEST_POSTGRES_URL``, dropped afterwards)."""
    data_dir = tmp / f"{label}-data"
    if args.database == "sqlite":
        yield {"POSTROOM_DATA_DIR": str(data_dir)}, str(data_dir / "postroom.db")
        return
    name = f"postroom_send_{label}_{secrets.token_hex(4)}"
    run_admin_sql(args.admin_url, f'CREATE DATABASE "{name}"')
    try:
        url = args.admin_url.rsplit("/", 1)[0] + "/" + name
        yield {"POSTROOM_DATA_DIR": str(data_dir), "POSTROOM_DATABASE_URL": url}, url
    finally:
        run_admin_sql(args.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the two runs -----------------------------------------------------------------------------------------------


PACED_P50, PACED_P99 = 0.010, 0.050  # at half the maximum rate, p50 <= 10 ms, p99 <= 50 ms

# The per-team limits (1000/second by default) would cap the measurement rather than the server.
UNLIMITED = "1000000/second"


def _wait_for_deliveries(delivered: Any, count: int, timeout: float) -> str:
    started = time.monotonic()
    while delivered.value < count and time.monotonic() - started < timeout:
        time.sleep(0.2)
    waited = time.monotonic() - started
    if delivered.value < count:
        return f"had delivered {delivered.value} of {count} after {waited:.0f} s (gave up waiting)"
    return f"delivered the {count} accepted in {waited:.1f} s more"


def run_postroom(
    ctx: Any, tmp: Path, args: argparse.Namespace, body: bytes, command: str, processes: int = 1
) -> LoadResult:
    """``command`` is ``serve`` (API with the embedded worker delivering) or ``api`` (the API alone, in
    ``processes`` processes)."""
    log_path = tmp / f"postroom-{command}-{processes}.log"
    with (
        run_database(args, tmp, f"postroom_{command}_{processes}") as (db_env, db),
        smtp_sink(ctx) as (
            sink_port,
            delivered,
            _sink,
        ),
        contextlib.ExitStack() as stack,
    ):
        env = subprocess_env(
            {
                **db_env,
                "POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{sink_port}",
                "POSTROOM_MAIL_HOSTNAME": MAIL_HOSTNAME,
                "POSTROOM_RATE_LIMIT": UNLIMITED,
                "POSTROOM_SEND_RATE_LIMIT": UNLIMITED,
            }
        )
        created = subprocess.run(
            [sys.executable, "-m", "postroom", "keys", "create", "--name", "bench", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        key = json.loads(created.stdout)["key"]
        subprocess.run(
            [sys.executable, "-m", "postroom", "domains", "add", SENDER_DOMAIN, "--approve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        port = free_port()
        log = stack.enter_context(log_path.open("wb"))
        argv = [sys.executable, "-m", "postroom", command, "--port", str(port)]
        if processes > 1:
            argv += ["--processes", str(processes)]
        server = subprocess.Popen(
            slow_sync([*argv, *(["--no-smtp"] if command == "serve" else [])], args.fsync_delay_ms),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        stack.callback(stop_server, server, args.fsync_delay_ms)
        wait_http_ready(f"http://127.0.0.1:{port}/api/health", server, log_path)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        pid = served_pid(server, args.fsync_delay_ms)
        result = run_load(ctx, f"http://127.0.0.1:{port}/api/emails", headers, body, args, pid)
        sent_during_run = delivered.value
        if args.paced > 0 and args.load == "wrk":
            if command == "serve":  # let the worker clear the backlog of the full-load run, or it competes
                caught_up = _wait_for_deliveries(delivered, result.ok_total, timeout=300)
                print(f"  postroom serve: its worker {caught_up} before the paced run")
            ok, rate, p50, p99 = run_paced(f"http://127.0.0.1:{port}/api/emails", headers, body, args, result.rps)
            result.paced = (rate, p50, p99)
            result.ok_total += ok  # its rows are in the database too
            result.open_at_end += 2 * args.concurrency
        stack.close()  # stop the server (it finishes in-flight deliveries) before reading the database
        if server.returncode not in (0, -signal.SIGTERM):
            print(f"  postroom {command} exited with {server.returncode}; log tail:\n{log_path.read_text()[-2000:]}")
        rows, mode = count_rows(db, "messages")
    worker = (
        f"the embedded worker delivered {sent_during_run} of them to the sink during the run"
        if command == "serve"
        else "no worker ran"
    )
    print(
        f"  postroom {command}{f' --processes {processes}' if processes > 1 else ''}: {rows} messages committed "
        f"for {result.ok_total} x 200 seen (warm-up included) "
        f"[{result.committed(rows)}]; {mode}; {worker}"
    )
    return result


def run_baseline(ctx: Any, tmp: Path, args: argparse.Namespace, body: bytes) -> LoadResult:
    log_path = tmp / "baseline.log"
    port = free_port()
    with run_database(args, tmp, "baseline") as (db_env, db), contextlib.ExitStack() as stack:
        subprocess.run(
            [sys.executable, "-m", "postroom", "migrate"],
            env=subprocess_env(db_env),
            capture_output=True,
            timeout=60,
            check=True,
        )  # Postroom's own tables and indexes, with the default team and project
        log = stack.enter_context(log_path.open("wb"))
        argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-baseline",
            str(port),
            "--baseline-db",
            db,
        ]
        server = subprocess.Popen(
            slow_sync(argv, args.fsync_delay_ms), env=subprocess_env({}), stdout=log, stderr=subprocess.STDOUT, cwd=tmp
        )
        stack.callback(stop_server, server, args.fsync_delay_ms)
        wait_http_ready(f"http://127.0.0.1:{port}/health", server, log_path)
        headers = {"Content-Type": "application/json"}
        pid = served_pid(server, args.fsync_delay_ms)
        result = run_load(ctx, f"http://127.0.0.1:{port}/api/emails", headers, body, args, pid)
        stack.close()
        rows, mode = count_rows(db, "messages")
    print(
        f"  baseline: {rows} messages committed for {result.ok_total} x 200 seen (warm-up included) "
        f"[{result.committed(rows)}]; {mode}"
    )
    return result


def load_arguments(parser: argparse.ArgumentParser) -> None:
    """The load options this benchmark and ``webhook_isolation.py`` share."""
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument(
        "--clients", type=int, default=1, help="load generator threads (wrk) or processes (httpx) (default 1)"
    )
    parser.add_argument(
        "--load",
        choices=("wrk", "httpx"),
        default="wrk" if shutil.which("wrk") else "httpx",
        help="load generator: wrk (default where installed: apt-get install wrk) or Python httpx clients",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the databases go (default: the system temp dir)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    load_arguments(parser)
    parser.add_argument(
        "--paced",
        type=float,
        default=0.5,
        help="after each postroom run, run again with the connections asking for this share of its rate, for the "
        "latency at that load (wrk only; default 0.5; 0 skips it)",
    )
    parser.add_argument(
        "--fsync-delay-ms",
        type=float,
        default=0.0,
        help="make every fsync/fdatasync of the servers return this much later (strace), as on a slower disk; "
        "0 (default): this machine's disk as it is",
    )
    parser.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="where both servers keep the data: SQLite (default) or a new database on the PostgreSQL cluster of "
        "POSTROOM_TEST_POSTGRES_URL (an admin URL)",
    )
    parser.add_argument(
        "--api-processes",
        type=int,
        default=2,
        help="also measure postroom api --processes N, one process a core (default 2; 0 or 1 skips it)",
    )
    parser.add_argument("--serve-baseline", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-db", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline, args.baseline_db)
        return
    if args.clients < 1 or args.concurrency < args.clients or args.duration <= 0 or args.warmup < 0:
        parser.error("need --clients >= 1, --concurrency >= --clients, --duration > 0, --warmup >= 0")
    args.admin_url = os.environ.get("POSTROOM_TEST_POSTGRES_URL", "")
    if args.database == "postgres" and not args.admin_url:
        parser.error("--database postgres needs POSTROOM_TEST_POSTGRES_URL (an admin URL of a PostgreSQL cluster)")
    if args.database == "postgres" and args.fsync_delay_ms > 0:
        parser.error("--fsync-delay-ms slows the servers' own flushes; on PostgreSQL the database server flushes")

    # SIGTERM unwinds like Ctrl-C, so every server, client and sink process is stopped and the temp dir removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ctx = multiprocessing.get_context("spawn")
    body = send_body()
    with tempfile.TemporaryDirectory(prefix="postroom-bench-", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"databases in {tmp} ({filesystem_of(tmp)})"
        )
        if args.fsync_delay_ms > 0:
            print(
                f"disk: every fsync/fdatasync of both servers returns {args.fsync_delay_ms:g} ms later than this disk "
                "answers (strace fault injection), as on a disk that flushes that much slower"
            )
        print(
            "database: SQLite, journal_mode=WAL, synchronous=FULL for both (postroom: group commit in one writer "
            "thread; baseline: Starlette, the same four inserts in one BEGIN/COMMIT per request)"
            if args.database == "sqlite"
            else "database: PostgreSQL on this machine, synchronous_commit=on for both, a new database per run "
            "(postroom: its asyncpg pools, each send also enqueued for pgqueuer; baseline: Starlette, the same four "
            "inserts in one transaction per request on an asyncpg pool of 8)"
        )
        generator = "wrk thread(s)" if args.load == "wrk" else "httpx client process(es)"
        print(
            f"load: {args.clients} {generator}, {args.concurrency} connections, {len(body)}-byte JSON "
            f"body, {args.warmup:g} s warm-up + {args.duration:g} s measured per server"
        )
        baseline = run_baseline(ctx, tmp, args, body)
        report("baseline", baseline)
        runs = {"baseline": baseline}
        meanings = {"serve": "API + embedded worker delivering", "api": "the API alone"}
        for command in ("serve", "api"):
            runs[command] = run_postroom(ctx, tmp, args, body, command)
            report(command, runs[command])
        if args.api_processes > 1:
            label = f"api x{args.api_processes}"
            meanings[label] = f"the API alone, postroom api --processes {args.api_processes}"
            runs[label] = run_postroom(ctx, tmp, args, body, "api", args.api_processes)
            report(label, runs[label])
    for command, meaning in meanings.items():
        ratio = runs[command].rps / baseline.rps if baseline.rps else float("nan")
        verdict = "OK" if ratio >= 1.0 else "BELOW TARGET"
        if args.fsync_delay_ms > 0:
            verdict += f" with fsync {args.fsync_delay_ms:g} ms slower than this disk's"
        print(f"ratio postroom {command} ({meaning})/baseline: {ratio:4.2f}x (target >= 1.0x): {verdict}")
    for label, result in runs.items():
        if result.client_cpu / args.clients >= 0.9:
            advice = (
                "compare with --clients 2"
                if args.clients == 1 and (os.cpu_count() or 1) > 2
                else f"this machine has {os.cpu_count()} cores for the server and the load generator together"
            )
            print(
                f"note: the load generator used {result.client_cpu:.0%} of a core during the {label} run "
                f"({args.clients} process(es)), so it may be the limit there; {advice}"
            )
        cores = args.api_processes if label.startswith("api x") else 1  # one interpreter uses one core at most
        if result.server_cpu >= 0.9 * cores:
            print(f"note: the {label} server used {result.server_cpu:.0%} of a core: it is CPU-bound at this load")
        elif result.server_cpu <= 0.5 * cores and result.client_cpu < 0.9:
            print(
                f"note: neither side of the {label} run was CPU-bound (server {result.server_cpu:.0%}): it waits "
                "on commits (fsync)"
            )


if __name__ == "__main__":
    main()
