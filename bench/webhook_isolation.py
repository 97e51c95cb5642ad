"""Does a webhook receiver that hangs slow down ``POST /api/emails``? Throughput with a hanging endpoint against
the same server whose webhook endpoint answers at once, printed as a ratio,
and against no webhook at all (what subscribing costs: the fan-out rows and batches, hanging or not).

Both runs use the load, the server setup and the discard-everything SMTP sink of ``send_throughput.py``
(``postroom serve`` on the embedded SQLite database, a Full Access key, sender.test approved, the embedded worker
delivering to the sink). In the second run the team also has a webhook subscribed to every event, pointing at a
loopback TCP server that accepts connections, reads what is sent and never answers
(``POSTROOM_WEBHOOK_ALLOW_PRIVATE=1`` lets it be registered), so every delivery attempt waits for the 30 s timeout;
in the third the webhook points at a loopback HTTP server that answers 200 at once.
Every send then also writes its fan-out rows (one per event) and the worker forms batches every second and tries
to deliver them; the ratio shows what that costs the API.

    .venv/bin/python bench/webhook_isolation.py [--duration 10] [--concurrency 32] [--warmup 2]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import filesystem_of, free_port, postroom_cli, stop_popen  # noqa: E402
from send_throughput import (  # noqa: E402
    MAIL_HOSTNAME,
    SENDER_DOMAIN,
    UNLIMITED,
    LoadResult,
    load_arguments,
    report,
    run_load,
    send_body,
    smtp_sink,
    subprocess_env,
    wait_http_ready,
)


@contextlib.contextmanager
def hanging_receiver() -> Iterator[tuple[int, list[int]]]:
    """(port, [connections accepted]) of a loopback server that reads requests and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    listener.settimeout(0.2)
    accepted = [0]
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            accepted[0] += 1
            conn.setblocking(False)
            held.append(conn)  # kept open, never answered

    thread = threading.Thread(target=serve, name="hanging-receiver", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@contextlib.contextmanager
def answering_receiver() -> Iterator[tuple[int, list[int]]]:
    """(port, [requests answered]) of a loopback HTTP server that answers every POST with 200 at once."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answered = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            answered[0] += 1
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="answering-receiver", daemon=True)
    thread.start()
    try:
        yield server.server_address[1], answered
    finally:
        server.shutdown()
        server.server_close()


def _count(db_path: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def run(
    ctx: Any,
    tmp: Path,
    args: argparse.Namespace,
    body: bytes,
    *,
    label: str,
    webhook_port: int | None = None,
    accepted: list[int] | None = None,
) -> LoadResult:
    """One server, one load run; with ``webhook_port`` the team has a webhook pointing there, already hanging."""
    import httpx

    data_dir = tmp / f"data-{label}"
    log_path = tmp / f"serve-{label}.log"
    with smtp_sink(ctx) as (sink_port, _delivered, _sink), contextlib.ExitStack() as stack:
        env = subprocess_env(
            {
                "POSTROOM_DATA_DIR": str(data_dir),
                "POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{sink_port}",
                "POSTROOM_MAIL_HOSTNAME": MAIL_HOSTNAME,
                "POSTROOM_WEBHOOK_ALLOW_PRIVATE": "1",
                "POSTROOM_SMTP_PORT": "0",
                "POSTROOM_SMTPS_PORT": "0",
                "POSTROOM_BOUNCE_PORT": "0",
                "POSTROOM_RATE_LIMIT": UNLIMITED,  # the per-team limits would cap the load, not the server
                "POSTROOM_SEND_RATE_LIMIT": UNLIMITED,
            }
        )
        key = json.loads(postroom_cli(env, "keys", "create", "--name", "bench", "--json"))["key"]
        postroom_cli(env, "domains", "add", SENDER_DOMAIN, "--approve")
        port = free_port()
        log = stack.enter_context(log_path.open("wb"))
        server = subprocess.Popen(
            [sys.executable, "-m", "postroom", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
        stack.callback(stop_popen, server)
        api = f"http://127.0.0.1:{port}/api"
        wait_http_ready(f"{api}/health", server, log_path)
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        if webhook_port is not None:
            created = httpx.post(
                f"{api}/webhooks",
                headers=headers,
                json={
                    "name": "hangs",
                    "url": f"http://127.0.0.1:{webhook_port}/hook",
                    "auth_type": "none",
                    "events_mode": "all",
                },
            )
            created.raise_for_status()
            # Prime it: the load starts only once deliveries are already stuck waiting on the receiver.
            for _ in range(3):
                httpx.post(f"{api}/emails", headers=headers, content=body).raise_for_status()
            deadline = time.monotonic() + 30
            while accepted is not None and accepted[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            if accepted is not None and accepted[0] == 0:
                raise RuntimeError("no webhook delivery reached the receiver within 30 s")
        result = run_load(ctx, f"{api}/emails", headers, body, args, server.pid)
        stack.close()
    db = data_dir / "postroom.db"
    if webhook_port is not None:
        pending = _count(db, "SELECT count(*) FROM webhook_events")
        batches = _count(db, "SELECT count(*) FROM webhook_batches")
        print(f"  {label}: {pending} events fanned out to the webhook, {batches} batches formed")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    load_arguments(parser)
    parser.add_argument("--rounds", type=int, default=2, help="alternating pairs of runs (default 2)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ctx = multiprocessing.get_context("spawn")
    body = send_body()
    with tempfile.TemporaryDirectory(prefix="postroom-bench-", dir=args.tmp_dir) as tmp_name:
        tmp = Path(tmp_name)
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"databases in {tmp} ({filesystem_of(tmp)})"
        )
        plain: list[LoadResult] = []
        fast: list[LoadResult] = []
        hung: list[LoadResult] = []
        with hanging_receiver() as (port, accepted), answering_receiver() as (fast_port, answered):
            for round_number in range(1, args.rounds + 1):  # alternated, so drift on a shared machine evens out
                plain.append(run(ctx, tmp, args, body, label=f"none-{round_number}"))
                report(f"none #{round_number}", plain[-1])
                label = f"answering-{round_number}"
                fast.append(run(ctx, tmp, args, body, label=label, webhook_port=fast_port, accepted=answered))
                report(f"fast #{round_number}", fast[-1])
                hung.append(
                    run(ctx, tmp, args, body, label=f"hanging-{round_number}", webhook_port=port, accepted=accepted)
                )
                report(f"hang #{round_number}", hung[-1])
            print(f"  the hanging receiver accepted {accepted[0]} connections and answered none")
            print(f"  the answering receiver answered {answered[0]} batches")
    none_rps, fast_rps, hung_rps = (sum(r.rps for r in runs) / len(runs) for runs in (plain, fast, hung))
    ratio = hung_rps / fast_rps if fast_rps else float("nan")
    print(
        f"POST /api/emails with a hanging webhook / with an answering one: {hung_rps:.1f} / {fast_rps:.1f} req/s = "
        f"{ratio:.2f}x (target: ~1.0x)"
    )
    print(
        f"subscribing at all (answering webhook / none): {fast_rps:.1f} / {none_rps:.1f} req/s = "
        f"{fast_rps / none_rps if none_rps else float('nan'):.2f}x"
    )


if __name__ == "__main__":
    main()
