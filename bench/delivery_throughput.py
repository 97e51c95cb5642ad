"""Messages per second the delivery worker hands to an SMTP server, DKIM-signed, against a raw aiosmtplib loop.

Both senders deliver the same number of messages of the same size to the same SMTP sink: an aiosmtpd
``Controller`` on 127.0.0.1 in a process of its own, which accepts every message, counts messages, bytes and
sessions, notes when the first and the last message arrived, and verifies nothing.

- postroom: ``--messages`` sends (one recipient each) are queued first, in this process, through the service layer
  (``postroom.emails.service.accept`` inside ``Database.write``, many sends per transaction) on the embedded SQLite
  database (WAL, ``synchronous=FULL``), from sender.test, a domain added with ``add_domain(..., approve=True)`` (so
  it has an RSA-2048 DKIM key). Then ``python -m postroom worker`` starts with ``POSTROOM_RELAY_URL`` pointing at
  the sink and ``POSTROOM_WORKER_CONCURRENCY=--concurrency``. Per message it claims the work item, loads the
  message, renders it, DKIM-signs it, sends it in one SMTP session and records the outcome (all through the
  database). The clock runs from starting the worker process until the sink has received the last message; the
  worker's RSS is sampled from /proc every 0.5 s (the kernel's own peak, VmHWM, is printed too).
- baseline: a process running ``--concurrency`` asyncio tasks that send one pre-rendered message (a Postroom
  message, rendered and DKIM-signed once, so the size is the same) with aiosmtplib, one message per SMTP session
  (connect, EHLO, MAIL, RCPT, DATA, QUIT), configured as Postroom's client is. No database, no rendering, no
  signing. The clock runs from starting the process until the sink has the last message. Postroom's worker keeps
  its SMTP sessions open for the next message (``delivery.smtp_session.ConnectionPool``, at most 10 per server);
  ``--baseline-reuse`` makes the baseline do the same on its ``--concurrency`` sessions. The sink's session count
  is printed for both.

Ratio: postroom/baseline messages per second, both timed from process start (target >= 0.5x); the rate between
the first and the last message at the sink (start-up excluded) is printed as well. Afterwards the database must
show every recipient delivered and every work item done.

    .venv/bin/python bench/delivery_throughput.py [--messages 10000] [--concurrency 16] [--baseline-reuse]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import multiprocessing
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import cpu_seconds, filesystem_of, serve_smtp_until, stop_mp, stop_popen  # noqa: E402

MAIL_HOSTNAME = "postroom.bench"
SENDER_DOMAIN = "sender.test"
RECIPIENT = "customer@example.test"
QUEUE_CHUNK = 250
RSS_INTERVAL = 0.5


# -- helpers ----------------------------------------------------------------------------------------------------


def status_kib(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` memory line (VmRSS, VmHWM) in KiB; 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


# -- the SMTP sink (its own process) ----------------------------------------------------------------------------


@dataclass
class SinkCounters:
    port: Any
    messages: Any
    data_bytes: Any
    sessions: Any
    first_at: Any
    last_at: Any

    def reset(self) -> None:
        with self.messages.get_lock():
            self.messages.value = self.data_bytes.value = self.sessions.value = 0
            self.first_at.value = self.last_at.value = 0.0


def _sink_main(counters: SinkCounters, stop: Any) -> None:

    class Counting:
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            with counters.messages.get_lock():
                counters.sessions.value += 1
            return responses

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            now = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux: comparable across processes
            with counters.messages.get_lock():
                counters.messages.value += 1
                counters.data_bytes.value += len(envelope.original_content or b"")
                if not counters.first_at.value:
                    counters.first_at.value = now
                counters.last_at.value = now
            return "250 2.0.0 OK discarded"

    def report(port: int) -> None:
        counters.port.value = port

    serve_smtp_until(Counting(), stop, report)


@contextlib.contextmanager
def smtp_sink(ctx: Any) -> Iterator[tuple[SinkCounters, int]]:
    """The sink's shared counters and its pid."""
    counters = SinkCounters(
        port=ctx.Value("i", 0),
        messages=ctx.Value("q", 0),
        data_bytes=ctx.Value("q", 0, lock=False),
        sessions=ctx.Value("q", 0, lock=False),
        first_at=ctx.Value("d", 0.0, lock=False),
        last_at=ctx.Value("d", 0.0, lock=False),
    )
    stop = ctx.Event()
    process = ctx.Process(target=_sink_main, args=(counters, stop), name="bench-smtp-sink", daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + 30
        while counters.port.value == 0 and time.monotonic() < deadline and process.is_alive():
            time.sleep(0.02)
        if counters.port.value <= 0:
            raise RuntimeError("the SMTP sink did not start")
        assert process.pid is not None
        yield counters, process.pid
    finally:
        stop.set()
        stop_mp(process)


# -- measuring one sender ---------------------------------------------------------------------------------------


@dataclass
class Drain:
    label: str
    messages: int
    total: float
    """Seconds from starting the sender process to the last message at the sink."""
    steady: float
    """Seconds from the first to the last message at the sink."""
    startup: float
    """Seconds from starting the sender process to the first message at the sink."""
    sessions: int
    data_bytes: int
    sender_cpu: float
    sink_cpu: float
    peak_rss_kib: int
    hwm_kib: int

    @property
    def rate(self) -> float:
        return self.messages / self.total

    @property
    def steady_rate(self) -> float:
        return (self.messages - 1) / self.steady if self.steady > 0 else float("nan")


def watch(
    label: str,
    pid: int,
    started: float,
    alive: Any,
    counters: SinkCounters,
    sink_pid: int,
    messages: int,
    timeout: float,
    log_tail: Any,
) -> Drain:
    """Wait until the sink has ``messages``; sample the sender's RSS every 0.5 s meanwhile."""
    sink_cpu_from = cpu_seconds(sink_pid)
    peak_rss = status_kib(pid, "VmRSS")
    next_sample = time.monotonic() + RSS_INTERVAL
    sender_cpu = 0.0
    while counters.messages.value < messages:
        now = time.monotonic()
        if now - started > timeout:
            raise TimeoutError(
                f"{label}: the sink has {counters.messages.value} of {messages} messages after {timeout:.0f} s"
                f"{log_tail()}"
            )
        if not alive():
            raise RuntimeError(f"{label}: the sender exited with {counters.messages.value} of {messages} sent")
        if now >= next_sample:
            peak_rss = max(peak_rss, status_kib(pid, "VmRSS"))
            next_sample += RSS_INTERVAL
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            sender_cpu = cpu_seconds(pid)
        time.sleep(0.02)
    peak_rss = max(peak_rss, status_kib(pid, "VmRSS"))
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        sender_cpu = cpu_seconds(pid)
    first, last = counters.first_at.value, counters.last_at.value
    return Drain(
        label=label,
        messages=messages,
        total=last - started,
        steady=last - first,
        startup=first - started,
        sessions=counters.sessions.value,
        data_bytes=counters.data_bytes.value,
        sender_cpu=sender_cpu / (last - started),
        sink_cpu=(cpu_seconds(sink_pid) - sink_cpu_from) / (last - started),
        peak_rss_kib=peak_rss,
        hwm_kib=status_kib(pid, "VmHWM"),
    )


def report(drain: Drain) -> None:
    print(
        f"{drain.label:<9} {drain.rate:7.1f} msg/s | {drain.messages} messages in {drain.total:6.2f} s from process "
        f"start (first after {drain.startup:4.2f} s; {drain.steady_rate:7.1f} msg/s first to last) | "
        f"{drain.sessions} SMTP sessions, {drain.data_bytes / drain.messages:6.0f} B/message | peak RSS "
        f"{mib(drain.peak_rss_kib)} (VmHWM {mib(drain.hwm_kib)}) | CPU: sender {drain.sender_cpu:4.0%}, "
        f"sink {drain.sink_cpu:4.0%} of one core"
    )


# -- baseline: raw aiosmtplib, one message per session ----------------------------------------------------------


def _baseline_main(
    port: int, message: bytes, count: int, concurrency: int, reuse: bool, timeout: int, results: Any
) -> None:
    import aiosmtplib

    async def run() -> int:
        remaining = count
        failures = 0

        def client() -> aiosmtplib.SMTP:
            # As postroom.delivery.smtp_session builds its client for a relay (the sink offers no STARTTLS).
            return aiosmtplib.SMTP(
                hostname="127.0.0.1",
                port=port,
                local_hostname=MAIL_HOSTNAME,
                timeout=timeout,
                use_tls=False,
                start_tls=None,
                validate_certs=True,
            )

        async def sender() -> None:
            nonlocal remaining, failures
            session: aiosmtplib.SMTP | None = None
            while remaining > 0:
                remaining -= 1
                try:
                    if session is None:
                        session = client()
                        await session.connect()
                    await session.sendmail(f"orders@{SENDER_DOMAIN}", [RECIPIENT], message)
                    if not reuse:
                        await session.quit()
                        session = None
                except (aiosmtplib.SMTPException, OSError):
                    failures += 1
                    remaining += 1  # send it again, so the sink still gets every message
                    if session is not None:
                        session.close()
                        session = None
            if session is not None:
                await session.quit()

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return failures

    results.put(asyncio.run(run()))


def run_baseline(
    ctx: Any, counters: SinkCounters, sink_pid: int, message: bytes, args: argparse.Namespace
) -> tuple[Drain, int]:
    counters.reset()
    results = ctx.Queue()
    process = ctx.Process(
        target=_baseline_main,
        args=(counters.port.value, message, args.messages, args.concurrency, args.baseline_reuse, 60, results),
        name="bench-baseline-sender",
        daemon=True,
    )
    started = time.monotonic()
    process.start()
    try:
        assert process.pid is not None
        drain = watch(
            "baseline",
            process.pid,
            started,
            lambda: process.is_alive() or counters.messages.value >= args.messages,
            counters,
            sink_pid,
            args.messages,
            args.timeout,
            lambda: "",
        )
        failures = int(results.get(timeout=60))
    finally:
        stop_mp(process)
    return drain, failures


# -- postroom: queue through the service layer, then run ``postroom worker`` ------------------------------------


def send_request() -> dict[str, Any]:
    """A typical transactional send (~1 KB): one recipient, subject, HTML and text parts (as send_throughput.py)."""
    paragraph = "Your order has shipped and is on its way. Track it from your account page at any time. "
    return {
        "from": f"orders@{SENDER_DOMAIN}",
        "from_name": "Bench Shop",
        "to": [RECIPIENT],
        "subject": "Your order has shipped",
        "html": "<html><body>" + "".join(f"<p>{paragraph}</p>" for _ in range(4)) + "</body></html>",
        "text": "\n\n".join(paragraph for _ in range(4)),
        "tag": "bench",
    }


@dataclass
class Queued:
    seconds: float
    message: bytes
    """One of the queued messages rendered and DKIM-signed as the worker does it: the baseline sends this."""
    render_us: float
    sign_us: float


async def queue_messages(env: dict[str, str], count: int) -> Queued:
    from postroom.audit.service import Actor
    from postroom.config import load_settings
    from postroom.core import dkim
    from postroom.core.clock import utcnow
    from postroom.db.engine import open_database
    from postroom.delivery.render import render
    from postroom.domains import service as domains_service
    from postroom.emails import queries as email_queries
    from postroom.emails import service as emails_service
    from postroom.messages.request import SendRequest, parse_send_request
    from postroom.system import defaults
    from postroom.teams import service as teams_service

    settings = load_settings(env)
    db = open_database(settings)
    try:
        await db.migrate(lambda conn: None if defaults.ensure_default_team(conn, now=utcnow()) else None)
        team_id = await db.read(lambda conn: teams_service.resolve_team(conn, team_id=None))
        domain = await db.write(
            lambda conn: domains_service.add_domain(
                conn,
                team_id=team_id,
                name=SENDER_DOMAIN,
                approve=True,
                actor=Actor(name="bench"),
                now=utcnow(),
                settings=settings,
            )
        )
        request = parse_send_request(send_request())

        def accept_many(conn: Any, n: int) -> str:
            message_id = ""
            for _ in range(n):
                message_id = emails_service.accept(
                    conn,
                    team_id=team_id,
                    api_key_id=None,
                    request=request,
                    now=utcnow(),
                    mail_hostname=settings.mail_hostname,
                ).message_id
            return message_id

        started = time.perf_counter()
        left, last_id = count, ""
        while left:
            n = min(QUEUE_CHUNK, left)
            last_id = await db.write(functools.partial(accept_many, n=n))
            left -= n
        seconds = time.perf_counter() - started

        row = await db.read(lambda conn: email_queries.message_by_id(conn, last_id))
        assert row is not None
        stored = SendRequest.from_json(row.content)
        rounds = 100
        started = time.perf_counter()
        for _ in range(rounds):
            raw = render(stored, message_id_header=row.message_id_header, created_at=row.created_at)
        render_us = (time.perf_counter() - started) / rounds * 1e6
        started = time.perf_counter()
        for _ in range(rounds):
            signature = dkim.sign(raw, domain.signing_key(settings.server_secret))
        sign_us = (time.perf_counter() - started) / rounds * 1e6
        return Queued(seconds=seconds, message=signature + raw, render_us=render_us, sign_us=sign_us)
    finally:
        await db.close()


def run_postroom(
    tmp: Path, env: dict[str, str], counters: SinkCounters, sink_pid: int, args: argparse.Namespace
) -> Drain:
    counters.reset()
    log_path = tmp / "postroom-worker.log"
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(log_path.open("wb"))
        started = time.monotonic()
        worker = subprocess.Popen(
            [sys.executable, "-m", "postroom", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp
        )
        stack.callback(stop_popen, worker)
        drain = watch(
            "postroom",
            worker.pid,
            started,
            lambda: worker.poll() is None,
            counters,
            sink_pid,
            args.messages,
            args.timeout,
            lambda: f"; worker log tail:\n{log_path.read_text(errors='replace')[-2000:]}",
        )
        stop_popen(worker)  # SIGTERM: in-flight deliveries finish and are recorded
        if worker.returncode not in (0, -signal.SIGTERM):
            print(f"  postroom worker exited with {worker.returncode}; log tail:\n{log_path.read_text()[-2000:]}")
    return drain


def database_outcome(db_path: Path) -> tuple[dict[str, int], dict[str, int], str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        recipients = dict(conn.execute("SELECT status, count(*) FROM recipients GROUP BY status").fetchall())
        items = dict(
            conn.execute("SELECT status, count(*) FROM work_items WHERE kind = 'deliver' GROUP BY status").fetchall()
        )
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        return recipients, items, mode
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10000, help="messages to deliver (default 10000)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="sessions at once: POSTROOM_WORKER_CONCURRENCY (default 16)"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="give up on a sender after this many seconds (default 60 + M/20)"
    )
    parser.add_argument(
        "--baseline-reuse",
        action="store_true",
        help="baseline keeps --concurrency sessions open and sends every message on them (default: one per session)",
    )
    parser.add_argument("--tmp-dir", default=None, help="where the database goes (default: the system temp dir)")
    args = parser.parse_args()
    if args.messages < 1 or args.concurrency < 1:
        parser.error("--messages and --concurrency must be at least 1")
    if args.timeout is None:
        args.timeout = 60 + args.messages / 20

    # SIGTERM unwinds like Ctrl-C, so the worker, the baseline sender and the sink are stopped and the temp dir
    # removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="postroom-bench-", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"database in {tmp} ({filesystem_of(tmp)})"
        )
        print(
            "database: embedded SQLite, journal_mode=WAL, synchronous=FULL, one group-commit writer thread "
            "(the baseline has no database)"
        )
        with smtp_sink(ctx) as (counters, sink_pid):
            env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
            env.update(
                {
                    "POSTROOM_DATA_DIR": str(tmp / "postroom-data"),
                    "POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{counters.port.value}",
                    "POSTROOM_MAIL_HOSTNAME": MAIL_HOSTNAME,
                    "POSTROOM_WORKER_CONCURRENCY": str(args.concurrency),
                }
            )
            queued = asyncio.run(queue_messages(env, args.messages))
            print(
                f"queued {args.messages} messages in {queued.seconds:.1f} s through emails.service.accept "
                f"({QUEUE_CHUNK} per transaction); each renders to {len(queued.message)} bytes signed; in-process "
                f"per message: render {queued.render_us:.0f} µs, DKIM sign (RSA-2048) {queued.sign_us:.0f} µs"
            )
            shape = "each sending messages back to back" if args.baseline_reuse else "one message per session"
            print(
                f"baseline: {args.concurrency} concurrent SMTP sessions, {shape}; postroom: "
                f"POSTROOM_WORKER_CONCURRENCY={args.concurrency}, sessions as its worker decides (counted below); "
                f"both to an aiosmtpd sink on 127.0.0.1:{counters.port.value} in its own process"
            )
            baseline, failures = run_baseline(ctx, counters, sink_pid, queued.message, args)
            report(baseline)
            if failures:
                print(f"  baseline: {failures} sessions failed and were retried")
            postroom = run_postroom(tmp, env, counters, sink_pid, args)
            report(postroom)
        recipients, items, mode = database_outcome(tmp / "postroom-data" / "postroom.db")
        complete = recipients == {"delivered": args.messages} and items == {"done": args.messages}
        print(
            f"  postroom database after the worker stopped: recipients {recipients}, delivery work items {items}, "
            f"journal_mode={mode} [{'OK' if complete else 'INCOMPLETE'}]"
        )
    ratio = postroom.rate / baseline.rate
    steady = postroom.steady_rate / baseline.steady_rate
    verdict = "OK" if ratio >= 0.5 else "BELOW TARGET"
    print(
        f"ratio postroom/baseline: {ratio:4.2f}x from process start (target >= 0.5x): {verdict}; "
        f"{steady:4.2f}x first to last message"
    )
    print(
        f"drained {args.messages} queued messages in {postroom.total:.1f} s ({postroom.rate:.0f} msg/s), "
        f"worker peak RSS {mib(max(postroom.peak_rss_kib, postroom.hwm_kib))}"
    )
    if postroom.sessions < postroom.messages and not args.baseline_reuse:
        print(
            f"note: postroom reused SMTP sessions ({postroom.sessions} for {postroom.messages} messages) while the "
            "baseline opened one per message; --baseline-reuse gives the like-for-like baseline"
        )
    for drain in (baseline, postroom):
        if drain.sink_cpu >= 0.9:
            print(
                f"note: the sink used {drain.sink_cpu:.0%} of a core during the {drain.label} run: it may be the limit"
            )


if __name__ == "__main__":
    main()
