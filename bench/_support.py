"""What the benchmarks share: process bookkeeping on Linux (/proc), clean shutdown of child processes,
statements on a PostgreSQL cluster's admin connection, and in-process ASGI requests."""

from __future__ import annotations

import contextlib
import multiprocessing.process
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """``cpu_seconds`` of a process and of its live descendants (the children of ``postroom api --processes N``)."""
    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    for child in children.read_text().split() if children.exists() else []:
        try:
            total += tree_cpu_seconds(int(child))
        except FileNotFoundError:  # it exited meanwhile
            pass
    return total


def filesystem_of(path: Path) -> str:
    """The mount (device and type) ``path`` lives on: fsync cost, and so SQLite's commit cost, depends on it."""
    best = ("?", "?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mount, fstype = line.split()[:3]
        if str(path.resolve()).startswith(mount.rstrip("/") + "/") and len(mount) >= len(best[2]):
            best = (device, fstype, mount)
    return f"{best[1]} on {best[0]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postroom_cli(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """``python -m postroom <args>`` with ``env``; its standard output (an error if it fails)."""
    done = subprocess.run(
        [sys.executable, "-m", "postroom", *args], env=env, capture_output=True, text=True, timeout=timeout, check=True
    )
    return done.stdout


def stop_popen(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Terminate a child process and wait; kill it if it does not stop in ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_mp(process: multiprocessing.process.BaseProcess) -> None:
    """A finished child exits at once; one still running (we are unwinding an error) gets SIGTERM after 3 s."""
    process.join(timeout=3)
    if process.is_alive():
        process.terminate()
        process.join(timeout=10)
    if process.is_alive():
        process.kill()
        process.join()


def serve_smtp_until(handler: Any, stop: Any, report_port: Callable[[int], None]) -> None:
    """Run an aiosmtpd server with ``handler`` on a free loopback port until ``stop`` is set.

    The port (or -1 when none could be bound) is handed to ``report_port`` once the server listens.
    """
    from aiosmtpd.controller import Controller

    controller = None
    for _ in range(10):
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="sink.bench")
        try:
            controller.start()
        except Exception:  # the port was taken between free_port() and bind: try another
            controller = None
            continue
        report_port(port)
        break
    if controller is None:
        report_port(-1)
        return
    try:
        stop.wait()
    finally:
        controller.stop()


# -- a slower disk: every fsync held back ----------------------------------------------------------------------


def slow_sync(argv: list[str], delay_ms: float) -> list[str]:
    """``argv`` run so that each of its ``fsync``/``fdatasync`` calls returns ``delay_ms`` later than the disk
    answered (strace's fault injection; with ``--seccomp-bpf`` no other system call stops). This stands in for a
    disk whose flush takes that much longer than this machine's; ``delay_ms`` 0 runs ``argv`` as it is."""
    if delay_ms <= 0:
        return argv
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("--fsync-delay-ms needs strace (apt-get install strace)")
    calls = "fsync,fdatasync"
    return [
        strace, "--follow-forks", "--seccomp-bpf", "--output=/dev/null", f"--trace={calls}",
        f"--inject={calls}:delay_exit={round(delay_ms * 1000)}", "--", *argv,
    ]  # fmt: skip


def served_pid(process: subprocess.Popen[bytes], delay_ms: float, timeout: float = 30) -> int:
    """The server's own pid: ``process`` itself, or under ``slow_sync`` the program strace started."""
    if delay_ms <= 0:
        return process.pid
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children.read_text().split() if children.exists() else []
        if found:
            return int(found[0])
        time.sleep(0.02)
    raise RuntimeError("the server did not start under strace")


def stop_server(process: subprocess.Popen[bytes], delay_ms: float) -> None:
    """``stop_popen`` for a server started through ``slow_sync``: SIGTERM goes to the server, and strace ends with
    it (exiting as the server did)."""
    if delay_ms > 0 and process.poll() is None:
        with contextlib.suppress(RuntimeError, ProcessLookupError):
            os.kill(served_pid(process, delay_ms, timeout=1), signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    stop_popen(process)


def run_admin_sql(url: str, sql: str) -> None:
    """Run one statement (``CREATE DATABASE``, ``DROP DATABASE``) on its own connection to ``url``."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


async def asgi_get(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], *, client: str = "127.0.0.1"
) -> tuple[int, dict[bytes, bytes]]:
    """Call the ASGI application in-process with a ``GET`` of ``path``: the status and response headers."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": (client, 40000),
        "server": ("127.0.0.1", 8025),
    }
    status = 0
    answer: dict[bytes, bytes] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            answer.update((k.lower(), v) for k, v in message.get("headers", ()))

    await app(scope, receive, send)
    return status, answer


@contextlib.asynccontextmanager
async def scratch_postgres(admin_url: str) -> Any:
    """A new, empty PostgreSQL database on the cluster of ``admin_url``, dropped afterwards; yields its URL."""
    import secrets

    import asyncpg

    name = f"postroom_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
