"""A scale-out installation on loopback: ``postroom api`` and ``postroom worker`` processes on one database.

Used by the system tests (tests/system/) and, through the same classes, by the security suite's live server.
Processes are real subprocesses started with ``python -m postroom``, each logging to its own file, stopped with
SIGTERM (graceful) or SIGKILL (crash) by pid.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import httpx
from sqlalchemy import Connection

from postroom.audit.service import Actor
from postroom.core.clock import utcnow
from postroom.domains import service as domains_service
from tests.conftest import Backend, free_port
from tests.support.smtp_sink import ReceivedMessage

MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.I | re.M)


class PostroomProcess:
    """One ``postroom <command>`` subprocess with its own log file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostroomProcess:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "postroom", *self.command],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        if self.alive():
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class ApiProcess(PostroomProcess):
    """``postroom api`` on a free loopback port: HTTP only, no worker; ``processes`` > 1 for ``--processes``."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        host: str = "127.0.0.1",
        processes: int = 1,
        port: int | None = None,
    ) -> None:
        self.host = host
        self.port = free_port() if port is None else port
        command = ["api", "--host", host, "--port", str(self.port)]
        super().__init__([*command, "--processes", str(processes)] if processes > 1 else command, env, log_path)

    def children(self) -> list[int]:
        """The pids of the processes ``--processes`` started (none for one process)."""
        path = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        return [int(pid) for pid in path.read_text().split()] if path.exists() else []

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api"

    def start(self, timeout: float = 30) -> ApiProcess:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"postroom api exited: {self.log_text()}")
            try:
                if httpx.get(self.api_url + "/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"postroom api did not become ready: {self.log_text()}")


class WorkerProcess(PostroomProcess):
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["worker"], env, log_path)


def stop_all(processes: Iterable[PostroomProcess]) -> None:
    for process in processes:
        process.terminate(timeout=30)


def new_team(backend: Backend) -> int:
    """A team of its own (with its default project), so that its rate-limit windows start empty."""
    from postroom.teams import queries as team_queries

    def create(conn: Connection) -> int:
        team_id = team_queries.insert_team(conn, "Rate-limited team", utcnow())
        team_queries.insert_project(conn, team_id, "Default project", is_default=True, now=utcnow())
        return int(team_id)

    return backend.write(create)


def ensure_sending_domain(backend: Backend, name: str = "sender.test", team_id: int | None = None) -> None:
    """An approved sending domain for ``team_id`` (default: the backend's default team)."""
    team = team_id or backend.team_id

    def add(conn: Connection) -> None:
        if domains_service.find_domain(conn, team_id=team, name=name) is None:
            domains_service.add_domain(
                conn,
                team_id=team,
                name=name,
                approve=True,
                actor=Actor(name="tests"),
                now=utcnow(),
                settings=backend.settings,
            )

    backend.write(add)


def message_ids(messages: Iterable[ReceivedMessage]) -> Counter[bytes]:
    """How many copies of each Message-ID arrived."""
    ids: Counter[bytes] = Counter()
    for message in messages:
        found = MESSAGE_ID.search(message.data)
        assert found, message.data[:500]
        ids[found.group(1)] += 1
    return ids
