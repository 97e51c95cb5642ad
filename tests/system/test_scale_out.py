"""Scale-out under load and faults: 2 ``postroom api`` and 3 ``postroom worker``
processes on one PostgreSQL database, a loopback DNS server and SMTP sink as the recipients' side, and a load of
sends through the official ``lettr`` SDK from several threads alternating between the two API processes, while
one worker is killed with SIGKILL three times and restarted.

Asserted: every request the API accepted (its ``request_id``) reached the sink for each of its recipients
(lost = 0); every copy the sink got carries an original Message-ID; duplicates ≤ kills × worker concurrency (the
messages a killed worker can have had in flight); every recipient ends ``delivered``.

The message count is ``POSTROOM_SYSTEM_MESSAGES`` (default 2,000, the CI value; the command in docs/scale-out.md runs 10,000).
The run prints one line (``system[postgres]: …``) with the counts and timings, which the CI log keeps.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from lettr import Lettr
from sqlalchemy import Connection, func, select

from postroom.models import messages, recipients
from tests.conftest import RECIPIENT_DOMAIN, Backend, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink
from tests.system.cluster import (
    MESSAGE_ID,
    ApiProcess,
    PostroomProcess,
    WorkerProcess,
    ensure_sending_domain,
    stop_all,
)

MESSAGES = int(os.environ.get("POSTROOM_SYSTEM_MESSAGES", "2000"))
CLIENT_THREADS = 8
WORKER_CONCURRENCY = 16
KILLS = 3
DELIVERY_TIMEOUT = 600.0


@pytest.fixture
def load_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


class Ledger:
    """What the sink received, parsed once per message as it arrives (Message-ID → recipients, copies)."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink
        self._seen = 0
        self.copies: Counter[bytes] = Counter()
        self.recipients: dict[bytes, set[str]] = {}

    def update(self) -> int:
        """Parse what arrived since the last call; returns the number of distinct Message-IDs so far."""
        arrived = self._sink.messages
        for message in arrived[self._seen :]:
            found = MESSAGE_ID.search(message.data)
            assert found, message.data[:500]
            self.copies[found.group(1)] += 1
            self.recipients.setdefault(found.group(1), set()).update(r.lower() for r in message.rcpt_tos)
        self._seen = len(arrived)
        return len(self.copies)


def _send_load(urls: list[str], key: str, thread: int, count: int, accepted: list[tuple[str, str]], errors: list[str]):  # type: ignore[no-untyped-def]
    clients = [Lettr(key, base_url=url, timeout=60) for url in urls]
    for i in range(count):
        recipient = f"t{thread}-{i}@{RECIPIENT_DOMAIN}"
        client = clients[(thread + i) % len(clients)]  # alternate between the API processes
        try:
            response = client.emails.send(
                from_email="load@sender.test", to=[recipient], subject=f"load {thread}-{i}", text="scale-out"
            )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        accepted.append((response.request_id, recipient))


def test_two_apis_and_three_workers_lose_nothing_when_a_worker_is_killed_three_times(
    pg_backend: Backend, dns_server: DnsServer, load_sink: SmtpSink, tmp_path: Path
) -> None:
    backend = pg_backend
    ensure_sending_domain(backend)
    key = backend.create_key(name="load").key
    env = backend.subprocess_env(
        {
            **mail_env(dns_server, load_sink),
            "POSTROOM_WORKER_LEASE": "3",
            "POSTROOM_WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            # 5 processes (and the processes other tests run meanwhile) share PostgreSQL's 100 connections
            "POSTROOM_DATABASE_POOL_SIZE": "6",
        }
    )
    processes: list[PostroomProcess] = []
    try:
        apis = [ApiProcess(env, tmp_path / f"api{n}.log").start() for n in range(2)]
        processes.extend(apis)
        workers = [WorkerProcess(env, tmp_path / f"worker{n}.log").start() for n in range(3)]
        processes.extend(workers)

        accepted: list[tuple[str, str]] = []
        errors: list[str] = []
        per_thread = [MESSAGES // CLIENT_THREADS + (1 if t < MESSAGES % CLIENT_THREADS else 0) for t in range(8)]
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=_send_load, args=([a.api_url for a in apis], key, t, per_thread[t], accepted, errors)
            )
            for t in range(CLIENT_THREADS)
        ]
        for thread in threads:
            thread.start()

        ledger = Ledger(load_sink)
        kills = 0
        victim = workers[0]
        for fraction in (0.25, 0.5, 0.75):
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while ledger.update() < MESSAGES * fraction:
                assert time.monotonic() < deadline, f"only {ledger.update()} messages arrived"
                assert not errors, errors[:5]
                time.sleep(0.2)
            victim.kill()
            kills += 1
            victim = WorkerProcess(env, victim.log_path).start()
            workers[0] = victim
            processes.append(victim)
        for thread in threads:
            thread.join()
        sent_in = time.monotonic() - started
        assert not errors, errors[:5]
        assert len(accepted) == MESSAGES

        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while ledger.update() < MESSAGES:
            assert time.monotonic() < deadline, f"only {ledger.update()} of {MESSAGES} distinct messages arrived"
            time.sleep(0.2)
        delivered_in = time.monotonic() - started

        def undelivered(conn: Connection) -> int:
            query = select(func.count()).select_from(recipients).where(recipients.c.status != "delivered")
            return int(conn.execute(query).scalar_one())

        deadline = time.monotonic() + 60
        while backend.read(undelivered) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert backend.read(undelivered) == 0
    finally:
        stop_all(processes)

    def message_id_of(conn: Connection) -> dict[str, bytes]:
        rows = conn.execute(select(messages.c.request_id, messages.c.message_id_header))
        return {row.request_id: row.message_id_header.encode() for row in rows}

    ledger.update()
    ids = backend.read(message_id_of)
    lost = [(rid, rcpt) for rid, rcpt in accepted if rcpt not in ledger.recipients.get(ids.get(rid, b"?"), set())]
    duplicates = sum(n - 1 for n in ledger.copies.values())
    bound = kills * WORKER_CONCURRENCY
    print(
        f"\nsystem[postgres]: apis=2 workers=3 kills={kills} client_threads={CLIENT_THREADS} messages={MESSAGES} "
        f"accepted={len(accepted)} lost={len(lost)} duplicates={duplicates} (bound {bound}) "
        f"accepted_in={sent_in:.1f}s delivered_in={delivered_in:.1f}s"
    )
    assert not lost, lost[:5]
    assert set(ledger.copies) == {ids[rid] for rid, _ in accepted}  # every copy carries an original Message-ID
    assert duplicates <= bound
