"""Shared fixtures: a real database per backend (SQLite file, PostgreSQL database), a live ``postroom serve``
process on loopback for each, the ``postroom`` command line as a subprocess, and HTTP clients that can speak from
any loopback address (127.0.0.0/8 is all ours), so allowlists and lockouts are exercised with real peers.

PostgreSQL runs when ``POSTROOM_TEST_POSTGRES_URL`` names an admin connection (``scripts/postgres.sh`` prints
one); with ``POSTROOM_REQUIRE_POSTGRES=1`` (as in CI) its absence is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import Connection, delete, text

from postroom.apikeys import service as keys_service
from postroom.audit.service import Actor
from postroom.config import Settings, load_settings
from postroom.core.clock import utcnow
from postroom.db.engine import Database, open_database
from postroom.domains.service import SendingDomain
from postroom.models import auth_blocks, auth_failures
from postroom.system import defaults
from postroom.teams import service as teams_service
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("POSTROOM_TEST_POSTGRES_URL", "")


class LoopThread:
    """One event loop in a thread for the whole session, so async database engines outlive each test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


@dataclass
class Backend:
    """A migrated database with its default team, reachable from the tests and from subprocesses."""

    name: str
    env: dict[str, str]
    settings: Settings
    db: Database
    loop: LoopThread
    team_id: int = 0
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def read(self, fn: Callable[[Connection], T]) -> T:
        async def go() -> T:
            return await self.db.read(fn)

        return self.loop.run(go())

    def write(self, fn: Callable[[Connection], T]) -> T:
        async def go() -> T:
            return await self.db.write(fn)

        return self.loop.run(go())

    def create_key(
        self,
        *,
        permission: str = "full",
        allowed_ips: str | None = None,
        name: str = "test key",
        expires_at: datetime | None = None,
        team_id: int | None = None,
        sandbox: bool = False,
    ) -> keys_service.CreatedKey:
        return self.write(
            lambda conn: keys_service.create_key(
                conn,
                team_id=team_id or self.team_id,
                name=name,
                permission=permission,
                allowed_ips=allowed_ips,
                expires_at=expires_at,
                created_by="tests",
                actor=Actor(name="tests"),
                now=utcnow(),
                sandbox=sandbox,
            )
        )

    def get_key(self, key_id: str) -> keys_service.ApiKeyRecord:
        return self.read(lambda conn: keys_service.get_key(conn, key_id=key_id, team_id=None))

    def dump(self) -> bytes:
        """Everything the database holds, as bytes, for scanning for secrets."""
        if self.name == "sqlite":
            path = self.settings.sqlite_path
            return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))

        def dump_rows(conn: Connection) -> bytes:
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars()
            out = []
            for table in list(tables):
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from pg_tables
                    out.append(repr(tuple(row)).encode())
            return b"\n".join(out)

        return self.read(dump_rows)

    def subprocess_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTROOM_")}
        env.update(self.env)
        env.update(extra or {})
        return env


def _ensure_default(conn: Connection) -> None:
    defaults.ensure_default_team(conn, now=utcnow())


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.stop()


def _make_backend(name: str, tmp: Path, loop: LoopThread, *, admin_url: str | None = None) -> Backend:
    """A fresh database: an SQLite file in ``tmp``, or a new database on ``admin_url``'s PostgreSQL (default: the
    test cluster of ``POSTROOM_TEST_POSTGRES_URL``)."""
    admin_url = admin_url or PG_ADMIN_URL
    cleanup: list[Callable[[], None]] = []
    # Every process of one backend (server, CLI, workers) shares the data directory and the server secret.
    env = {"POSTROOM_DATA_DIR": str(tmp / "data"), "POSTROOM_SECRET_KEY": secrets.token_hex(32)}
    if name != "sqlite":
        if not admin_url:
            if os.environ.get("POSTROOM_REQUIRE_POSTGRES") == "1":
                pytest.fail("POSTROOM_REQUIRE_POSTGRES=1 but POSTROOM_TEST_POSTGRES_URL is not set")
            pytest.skip("PostgreSQL not configured (set POSTROOM_TEST_POSTGRES_URL; see scripts/postgres.sh)")
        import asyncpg

        database = f"postroom_test_{secrets.token_hex(4)}"

        async def admin(sql: str) -> None:
            conn = await asyncpg.connect(admin_url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        loop.run(admin(f'CREATE DATABASE "{database}"'))
        cleanup.append(lambda: loop.run(admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')))
        env["POSTROOM_DATABASE_URL"] = admin_url.rsplit("/", 1)[0] + "/" + database
    settings = load_settings(env)
    db = open_database(settings)
    loop.run(db.migrate(_ensure_default))
    backend = Backend(name=name, env=env, settings=settings, db=db, loop=loop, cleanup=cleanup)

    async def default_team() -> int:
        return await db.read(lambda conn: teams_service.resolve_team(conn, team_id=None))

    backend.team_id = loop.run(default_team())
    return backend


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread):  # type: ignore[no-untyped-def]
    backend = _make_backend(request.param, tmp_path_factory.mktemp(request.param), loop_thread)
    yield backend
    loop_thread.run(backend.db.close())
    for step in backend.cleanup:
        step()


@pytest.fixture(scope="module")
def own_backend(backend: Backend, tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread):  # type: ignore[no-untyped-def]
    """A database of the same engine that no live server touches, for tests that own the whole outbox."""
    isolated = _make_backend(backend.name, tmp_path_factory.mktemp(f"own-{backend.name}"), loop_thread)
    yield isolated
    loop_thread.run(isolated.db.close())
    for step in isolated.cleanup:
        step()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SMTP_OFF = {"POSTROOM_SMTP_PORT": "0", "POSTROOM_SMTPS_PORT": "0", "POSTROOM_BOUNCE_PORT": "0"}
"""Servers share the machine: their SMTP listeners are off unless a test gives them free ports."""


class Server:
    """``postroom serve`` as its own process on loopback."""

    def __init__(self, backend: Backend, log_path: Path, *, host: str = "127.0.0.1", env: dict[str, str] | None = None):
        self.backend = backend
        self.host = host
        self.port = free_port()
        self.log_path = log_path
        self._env = backend.subprocess_env({**SMTP_OFF, **(env or {})})
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api"

    def start(self) -> Server:
        log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "postroom", "serve", "--host", self.host, "--port", str(self.port)],
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"postroom serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.api_url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"postroom serve did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


SENDER_DOMAIN = "sender.test"
RECIPIENT_DOMAIN = "example.test"


@pytest.fixture(scope="session")
def dns_server() -> Iterator[DnsServer]:
    """The nameserver Postroom resolves MX records with: example.test's mail goes to the SMTP sink."""
    with DnsServer() as dns:
        dns.add(RECIPIENT_DOMAIN, "MX", "10 mx.example.test")
        dns.add("mx.example.test", "A", "127.0.0.1")
        yield dns


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    """The recipients' mail server, on loopback, offering STARTTLS."""
    with SmtpSink(starttls=True) as sink:
        yield sink


@pytest.fixture(scope="module")
def receiver() -> Iterator[HTTPServer]:
    """A webhook receiver on loopback (pytest-httpserver), for one test module."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def sink(smtp_sink: SmtpSink) -> Iterator[SmtpSink]:
    """The shared sink, emptied and with no scripted failures, for one test."""
    smtp_sink.clear()
    yield smtp_sink
    smtp_sink.clear()


def mail_env(dns: DnsServer, sink: SmtpSink) -> dict[str, str]:
    return {
        "POSTROOM_DNS_SERVER": dns.address,
        "POSTROOM_MX_PORT": str(sink.port),
        "POSTROOM_MAIL_HOSTNAME": "postroom.test",
        "POSTROOM_RETRY_BASE": "1",
        "POSTROOM_RETRY_MAX": "2",
    }


@pytest.fixture(scope="session")
def server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer, smtp_sink: SmtpSink
) -> Iterator[Server]:
    srv = Server(
        backend, tmp_path_factory.mktemp(f"server-{backend.name}") / "server.log", env=mail_env(dns_server, smtp_sink)
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def sending_domain(backend: Backend, dns_server: DnsServer) -> SendingDomain:
    """sender.test, approved, with its DKIM key published in the loopback DNS."""
    from postroom.domains import service as domains_service

    existing = backend.read(lambda conn: domains_service.find_domain(conn, team_id=backend.team_id, name=SENDER_DOMAIN))
    domain = existing or backend.write(
        lambda conn: domains_service.add_domain(
            conn,
            team_id=backend.team_id,
            name=SENDER_DOMAIN,
            approve=True,
            actor=Actor(name="tests"),
            now=utcnow(),
            settings=backend.settings,
        )
    )
    dns_server.add(domain.dkim_record_name, "TXT", domain.dkim_public_key)
    return domain


@pytest.fixture(scope="session")
def proxied_server(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory, dns_server: DnsServer, smtp_sink: SmtpSink
) -> Iterator[Server]:
    """A server listening on every IPv4 and IPv6 loopback form ("::"), trusting 127.0.0.1 as a proxy.

    It shares the database (and so the outbox) with ``server``, so it gets the same mail settings.
    """
    srv = Server(
        backend,
        tmp_path_factory.mktemp(f"proxied-{backend.name}") / "server.log",
        host="::",
        env={**mail_env(dns_server, smtp_sink), "POSTROOM_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8"},
    ).start()
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _forget_auth_failures(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests share a server; failures one test provokes must not lock out the next one's address."""
    yield
    if "backend" in request.fixturenames:
        backend: Backend = request.getfixturevalue("backend")

        def forget(conn: Connection) -> None:
            conn.execute(delete(auth_blocks))
            conn.execute(delete(auth_failures))

        backend.write(forget)


def run_cli(backend: Backend, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``postroom …`` in its own process against the backend's database (``env``: extra settings)."""
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "postroom", *args],
        env=backend.subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def http_from(source_ip: str = "127.0.0.1") -> httpx.Client:
    """An HTTP client whose connections come from ``source_ip`` (any 127.x address, or ::1)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=source_ip), timeout=10)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_for_state(client: Any, request_id: str, state: str, timeout: float = 15) -> Any:
    """The transmission's detail (``GET /emails/{request_id}`` through the SDK) once it reaches ``state``."""
    deadline = time.monotonic() + timeout
    while True:
        detail = client.emails.get(request_id)
        if detail.state == state:
            return detail
        if time.monotonic() > deadline:
            raise AssertionError(f"{request_id} stayed {detail.state}, events {[e.type for e in detail.events]}")
        time.sleep(0.1)
