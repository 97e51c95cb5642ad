"""Delivery throughput with 1, 2 and 3 ``postroom worker`` processes on one PostgreSQL database.

For each worker count: a fresh database on the PostgreSQL cluster named by ``POSTROOM_TEST_POSTGRES_URL`` (an admin
connection), ``--messages`` sends queued through the service layer (as delivery_throughput.py queues them: one
recipient, ~1 KB, DKIM-signed by the worker), then N ``python -m postroom worker`` processes started at once with
``POSTROOM_RELAY_URL`` pointing at an aiosmtpd sink in a process of its own (accepts and counts, verifies
nothing). The clock runs from starting the workers until the sink has every message.

Printed: messages/s per worker count and the scaling ratio against 1 worker measured in the same run (target
>= 1.7x at 2 workers), with the CPU the workers, the sink and PostgreSQL used. The machine's core count is printed
too: every process (workers, PostgreSQL, the sink, this script) shares those cores, so on a 2-core machine the
ratio is bounded by the CPU left over, not by Postroom's claiming.

    POSTROOM_TEST_POSTGRES_URL=postgresql://… .venv/bin/python bench/scale.py [--messages 3000] [--workers 1 2 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import cpu_seconds, run_admin_sql, stop_popen  # noqa: E402
from delivery_throughput import MAIL_HOSTNAME, queue_messages, smtp_sink  # noqa: E402


def postgres_cpu_by_pid() -> dict[int, float]:
    """CPU used so far by each process named postgres (the server and its backends), from /proc.

    Backends exit with their connections, taking their CPU time with them, so callers sample while the work runs
    and keep each pid's last reading."""
    seen: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if (entry / "comm").read_text().strip() == "postgres":
                    seen[int(entry.name)] = cpu_seconds(int(entry.name))
    return seen


def run(admin_url: str, workers: int, args: argparse.Namespace, counters: Any, sink_pid: int, tmp: Path) -> float:
    name = f"postroom_scale_{secrets.token_hex(4)}"
    run_admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
        env.update(
            {
                "POSTROOM_DATABASE_URL": admin_url.rsplit("/", 1)[0] + "/" + name,
                "POSTROOM_DATA_DIR": str(tmp / name),
                "POSTROOM_SECRET_KEY": secrets.token_hex(32),
                "POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{counters.port.value}",
                "POSTROOM_MAIL_HOSTNAME": MAIL_HOSTNAME,
                "POSTROOM_WORKER_CONCURRENCY": str(args.concurrency),
                "POSTROOM_DATABASE_POOL_SIZE": "8",
                "POSTROOM_LOG_LEVEL": "warning",
            }
        )
        asyncio.run(queue_messages(env, args.messages))
        counters.reset()
        pg_from, sink_from = postgres_cpu_by_pid(), cpu_seconds(sink_pid)
        pg_last = dict(pg_from)
        started = time.monotonic()
        logs = [(tmp / f"{name}-worker{n}.log").open("wb") for n in range(workers)]
        processes = [
            subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "postroom", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
            for log in logs
        ]
        worker_cpu = [0.0] * workers
        try:
            while counters.messages.value < args.messages:
                if time.monotonic() - started > args.timeout:
                    raise TimeoutError(f"{workers} worker(s): {counters.messages.value} of {args.messages} delivered")
                for i, process in enumerate(processes):
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                        worker_cpu[i] = cpu_seconds(process.pid)
                pg_last.update(postgres_cpu_by_pid())
                time.sleep(0.05)
            elapsed = float(counters.last_at.value) - started
        finally:
            for process in processes:
                stop_popen(process)
            for log in logs:
                log.close()
        rate: float = args.messages / elapsed
        pg_cpu = sum(cpu - pg_from.get(pid, 0.0) for pid, cpu in pg_last.items())
        print(
            f"{workers} worker(s): {rate:7.1f} msg/s | {args.messages} messages in {elapsed:6.2f} s | CPU (cores): "
            f"workers {sum(worker_cpu) / elapsed:4.2f}, postgres {pg_cpu / elapsed:4.2f}, "
            f"sink {(cpu_seconds(sink_pid) - sink_from) / elapsed:4.2f}",
            flush=True,
        )
        return rate
    finally:
        run_admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--concurrency", type=int, default=16, help="POSTROOM_WORKER_CONCURRENCY per worker")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    admin_url = os.environ.get("POSTROOM_TEST_POSTGRES_URL")
    if not admin_url:
        sys.exit("bench/scale.py needs POSTROOM_TEST_POSTGRES_URL (an admin connection to a PostgreSQL cluster)")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (workers, PostgreSQL, the sink and this script share "
        f"them), Python {platform.python_version()}; {args.messages} messages per run, "
        f"POSTROOM_WORKER_CONCURRENCY={args.concurrency}, sink in its own process on loopback",
        flush=True,
    )
    ctx = multiprocessing.get_context("spawn")
    rates: dict[int, float] = {}
    with smtp_sink(ctx) as (counters, sink_pid), tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            rates[workers] = run(admin_url, workers, args, counters, sink_pid, Path(tmp))
    base = rates.get(1) or next(iter(rates.values()))
    for workers, rate in rates.items():
        target = "  (target >= 1.7x)" if workers == 2 else ""
        print(f"scaling {workers} worker(s) vs 1: {rate / base:4.2f}x{target}")


if __name__ == "__main__":
    main()
