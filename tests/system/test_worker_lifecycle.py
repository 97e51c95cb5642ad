"""Graceful shutdown and readiness.

SIGTERM makes a worker stop claiming, finish what it is sending within ``POSTROOM_WORKER_SHUTDOWN_TIMEOUT`` and
release what did not finish, so a successor takes it at once rather than when the lease runs out. Unlike SIGKILL
(tests/contract/test_crash.py, tests/system/test_scale_out.py), a stop that finishes in time repeats nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, func, select

from postroom.core.clock import utcnow
from postroom.emails import service as emails_service
from postroom.messages.request import parse_send_request
from postroom.models import recipients, work_items
from tests.conftest import Backend, LoopThread, _make_backend
from tests.support.smtp_sink import SmtpSink
from tests.system.cluster import ApiProcess, WorkerProcess, ensure_sending_domain, message_ids


class SlowSink(SmtpSink):
    """A recipient server that takes ``delay`` seconds over every DATA, so deliveries are in flight for a while."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    def _data_reply(self) -> str | None:
        time.sleep(self.delay)  # blocks the sink's loop: one message at a time, like a slow single-threaded MTA
        return super()._data_reply()


@pytest.fixture
def slow_sink() -> Iterator[SlowSink]:
    with SlowSink(delay=0.02) as sink:
        yield sink


def _queue(backend: Backend, count: int, tag: str) -> None:
    requests = [
        parse_send_request({"from": "slow@sender.test", "to": [f"{tag}{i}@example.test"], "subject": "s", "text": "x"})
        for i in range(count)
    ]

    def accept(conn: Connection) -> None:
        for request in requests:
            emails_service.accept(
                conn, team_id=backend.team_id, api_key_id=None, request=request, now=utcnow(), mail_hostname="pr.test"
            )

    backend.write(accept)


def _count(backend: Backend, query: object) -> int:
    return int(backend.read(lambda conn: conn.execute(query).scalar_one()))  # type: ignore[call-overload]


LEASED = select(func.count()).select_from(work_items).where(work_items.c.status == "leased")
UNDELIVERED = select(func.count()).select_from(recipients).where(recipients.c.status != "delivered")


def _worker_env(backend: Backend, sink: SmtpSink, **extra: str) -> dict[str, str]:
    return backend.subprocess_env(
        {
            "POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{sink.port}",
            "POSTROOM_MAIL_HOSTNAME": "postroom.test",
            "POSTROOM_WORKER_LEASE": "600",  # only a release, never an expired lease, lets a successor in quickly
            "POSTROOM_DATABASE_POOL_SIZE": "6",
            **extra,
        }
    )


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_sigterm_lets_in_flight_deliveries_finish_so_nothing_is_sent_twice(
    own_backend: Backend, slow_sink: SlowSink, tmp_path: Path
) -> None:
    backend = own_backend
    ensure_sending_domain(backend)
    _queue(backend, 200, "graceful")
    env = _worker_env(backend, slow_sink, POSTROOM_WORKER_CONCURRENCY="8", POSTROOM_WORKER_SHUTDOWN_TIMEOUT="30")
    first = WorkerProcess(env, tmp_path / "worker1.log").start()
    try:
        _wait(lambda: len(slow_sink.messages) >= 30, 60, "the first worker delivered nothing")
        started = time.monotonic()
        assert first.terminate(timeout=40) == 0, first.log_text()
        assert time.monotonic() - started < 35
        assert _count(backend, LEASED) == 0  # finished or released: nothing left waiting for a lease to expire
    finally:
        first.terminate()
    successor = WorkerProcess(env, tmp_path / "worker2.log").start()
    try:
        _wait(lambda: len(message_ids(slow_sink.messages)) >= 200, 90, "not every message arrived")
        _wait(lambda: _count(backend, UNDELIVERED) == 0, 30, "recipients not all marked delivered")
    finally:
        successor.terminate()
    copies = message_ids(slow_sink.messages)
    print(f"\ngraceful[{backend.name}]: messages=200 duplicates={sum(n - 1 for n in copies.values())}")
    assert all(n == 1 for n in copies.values())


def test_sigterm_releases_what_did_not_finish_in_time_and_a_successor_takes_it_at_once(
    own_backend: Backend, tmp_path: Path
) -> None:
    backend = own_backend
    ensure_sending_domain(backend)
    _queue(backend, 20, "released")
    concurrency = 4
    with SlowSink(delay=1.0) as sink:
        env = _worker_env(
            backend, sink, POSTROOM_WORKER_CONCURRENCY=str(concurrency), POSTROOM_WORKER_SHUTDOWN_TIMEOUT="1"
        )
        first = WorkerProcess(env, tmp_path / "worker1.log").start()
        try:
            _wait(lambda: _count(backend, LEASED) > 0, 30, "the first worker claimed nothing")
            time.sleep(0.5)
            started = time.monotonic()
            assert first.terminate(timeout=30) == 0, first.log_text()
            stopped_in = time.monotonic() - started
            assert _count(backend, LEASED) == 0, "a stopped worker must not keep leases"
            assert "released" in first.log_text()
        finally:
            first.terminate()
        env["POSTROOM_WORKER_SHUTDOWN_TIMEOUT"] = "30"
        sink.delay = 0.0
        successor = WorkerProcess(env, tmp_path / "worker2.log").start()
        try:
            # well inside the 600 s lease: only the release makes this possible
            _wait(lambda: _count(backend, UNDELIVERED) == 0, 60, "released items were not taken over")
        finally:
            successor.terminate()
        copies = message_ids(sink.messages)
    assert stopped_in < 10
    assert len(copies) == 20
    assert sum(n - 1 for n in copies.values()) <= concurrency  # only what was cut off mid-send can repeat


def test_readiness_answers_503_once_the_database_is_gone_while_health_stays_200(
    loop_thread: LoopThread, tmp_path: Path
) -> None:
    backend = _make_backend("postgres", tmp_path, loop_thread)
    api = ApiProcess(backend.subprocess_env(), tmp_path / "api.log").start()
    try:
        assert httpx.get(api.api_url + "/health/ready").json()["data"]["status"] == "ready"
        loop_thread.run(backend.db.close())
        for step in backend.cleanup:  # DROP DATABASE … WITH (FORCE): the server's connections are cut
            step()
        response = httpx.get(api.api_url + "/health/ready", timeout=10)
        assert response.status_code == 503
        assert response.json() == {
            "message": "The database is not reachable.",
            "error_code": "not_ready",
            "reason": "database_unreachable",
        }
        assert httpx.get(api.api_url + "/health").status_code == 200
    finally:
        api.terminate()
        with contextlib.suppress(Exception):
            for step in backend.cleanup:
                step()
