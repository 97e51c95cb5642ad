"""Crash safety: kill -9 of a delivery worker loses nothing and duplicates only
what was in flight, with the same Message-ID; kill -9 of the API loses no send that was answered 200.

Each run counts what a real SMTP server on loopback received and reports ``lost=… duplicates=…``.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Connection, select

from postroom.core.clock import utcnow
from postroom.emails import service as emails_service
from postroom.messages.request import parse_send_request
from postroom.models import messages, recipients
from tests.conftest import Backend, Server, bearer, http_from
from tests.support.smtp_sink import SmtpSink
from tests.system.cluster import ensure_sending_domain, message_ids

MESSAGES = 2000
CONCURRENCY = 16


@pytest.fixture
def crash_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


def _env(backend: Backend, sink: SmtpSink) -> dict[str, str]:
    return backend.subprocess_env(
        {
            "POSTROOM_RELAY_URL": f"smtp://127.0.0.1:{sink.port}",
            "POSTROOM_WORKER_LEASE": "3",
            "POSTROOM_WORKER_CONCURRENCY": str(CONCURRENCY),
            "POSTROOM_MAIL_HOSTNAME": "postroom.test",
        }
    )


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "postroom", "worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


def _wait_for_unique(sink: SmtpSink, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(message_ids(sink.messages)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(message_ids(sink.messages))} of {count} messages arrived")
        time.sleep(0.05)


def test_killing_the_worker_loses_nothing_and_duplicates_only_in_flight_messages(
    own_backend: Backend, crash_sink: SmtpSink, tmp_path: Path
) -> None:
    backend = own_backend
    ensure_sending_domain(backend)
    expected: set[bytes] = set()
    for batch in range(MESSAGES // 100):
        requests = [
            parse_send_request(
                {
                    "from": "bulk@sender.test",
                    "to": [f"r{batch}-{i}@example.test"],
                    "subject": f"#{batch}-{i}",
                    "text": "x",
                }
            )
            for i in range(100)
        ]

        def accept(conn: Connection, requests: list = requests) -> list[str]:  # type: ignore[type-arg]
            now = utcnow()
            accepted = [
                emails_service.accept(
                    conn, team_id=backend.team_id, api_key_id=None, request=r, now=now, mail_hostname="postroom.test"
                )
                for r in requests
            ]
            return [a.message_id for a in accepted]

        backend.write(accept)

    def headers(conn: Connection) -> set[bytes]:
        return {row.encode() for row in conn.execute(select(messages.c.message_id_header)).scalars()}

    expected = backend.read(headers)
    assert len(expected) == MESSAGES

    env, log = _env(backend, crash_sink), tmp_path / "worker.log"
    kills = 0
    for threshold in (MESSAGES // 4, MESSAGES // 2, 3 * MESSAGES // 4):
        worker = _start_worker(env, log)
        _wait_for_unique(crash_sink, threshold, timeout=90)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        kills += 1
    worker = _start_worker(env, log)
    try:
        _wait_for_unique(crash_sink, MESSAGES, timeout=120)

        def undelivered(conn: Connection) -> int:
            return len(conn.execute(select(recipients.c.id).where(recipients.c.status != "delivered")).all())

        deadline = time.monotonic() + 30
        while backend.read(undelivered) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert backend.read(undelivered) == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    received = message_ids(crash_sink.messages)
    lost = expected - set(received)
    duplicates = sum(n - 1 for n in received.values())
    print(f"\ncrash[{backend.name}]: kills={kills} messages={MESSAGES} lost={len(lost)} duplicates={duplicates}")
    assert not lost
    assert set(received) == expected  # every copy carries an original Message-ID
    assert duplicates <= kills * CONCURRENCY


def test_killing_the_api_loses_no_acknowledged_send(own_backend: Backend, crash_sink: SmtpSink, tmp_path: Path) -> None:
    backend = own_backend
    ensure_sending_domain(backend)
    key = backend.create_key().key
    server = Server(backend, tmp_path / "api.log", env=_env(backend, crash_sink)).start()
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        with http_from() as http:
            i = 0
            while not stop.is_set():
                i += 1
                body = {"from": "api@sender.test", "to": [f"c{n}-{i}@example.test"], "subject": "s", "text": "x"}
                try:
                    response = http.post(server.api_url + "/emails", json=body, headers=bearer(key), timeout=5)
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    with lock:
                        acknowledged.append(response.json()["data"]["request_id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, n) for n in range(8)]
        deadline = time.monotonic() + 20
        while len(acknowledged) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server._process is not None
        os.kill(server._process.pid, signal.SIGKILL)
        server._process.wait()
        stop.set()
        for future in futures:
            future.result()
    assert len(acknowledged) >= 300

    def stored(conn: Connection) -> set[str]:
        return set(conn.execute(select(messages.c.request_id)).scalars())

    # a fresh process reads the database after the crash
    check = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "postroom", "migrate"], env=backend.subprocess_env(), capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr
    missing = set(acknowledged) - backend.read(stored)
    print(f"\napi-crash[{backend.name}]: acknowledged={len(acknowledged)} lost={len(missing)}")
    assert not missing
