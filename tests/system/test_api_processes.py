"""``postroom api --processes N``: one port served by N processes that agree on everything a client can see.

Each test starts a real ``postroom api --processes 2`` on the session's database (SQLite and PostgreSQL) and talks to
it over new connections, which the kernel spreads over the two processes (``SO_REUSEPORT``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from postroom.models import messages
from tests.conftest import Backend, bearer, http_from
from tests.system.cluster import ApiProcess, ensure_sending_domain, new_team


def _read_syscalls(pid: int) -> int:
    """How many read system calls ``pid`` has made: it grows with every request the process answers."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr in /proc/<pid>/io")


def _health_count(text: str) -> float:
    """The ``GET /api/health`` requests a ``/metrics`` page counts, over every status."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("postroom_http_requests_total{") and 'route="/api/health"' in line
    )


@pytest.fixture
def api(backend: Backend, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(backend.subprocess_env(), tmp_path / "api.log", processes=2).start()
    try:
        yield process
    finally:
        process.terminate()


@pytest.fixture
def limited_api(backend: Backend, tmp_path: Path) -> Iterator[ApiProcess]:
    """Two processes allowing each team 10 requests a minute."""
    env = backend.subprocess_env({"POSTROOM_RATE_LIMIT": "10/minute"})
    process = ApiProcess(env, tmp_path / "limited.log", processes=2).start()
    try:
        yield process
    finally:
        process.terminate()


def test_both_processes_answer_and_one_rate_limit_window_holds_across_them(
    backend: Backend, limited_api: ApiProcess
) -> None:
    api = limited_api
    children = api.children()
    assert len(children) == 2
    key = backend.create_key(team_id=new_team(backend)).key
    before = {pid: _read_syscalls(pid) for pid in children}
    statuses = []
    for _ in range(14):
        with http_from() as http:  # a new connection each time, so the kernel picks a process each time
            statuses.append(http.get(api.api_url + "/projects", headers=bearer(key)).status_code)
    # Two processes each counting alone would have let up to 20 through.
    assert statuses == [200] * 10 + [429] * 4
    for _ in range(40):
        with http_from() as http:
            assert http.get(api.api_url + "/health").status_code == 200
    grown = {pid: _read_syscalls(pid) - before[pid] for pid in children}
    assert all(count > 20 for count in grown.values()), f"a process answered nothing: {grown}"


def test_metrics_count_every_process_s_requests_once_whichever_answers_the_scrape(api: ApiProcess) -> None:
    with http_from() as http:
        start = _health_count(http.get(api.base_url + "/metrics").text)
    for _ in range(30):
        with http_from() as http:
            assert http.get(api.api_url + "/health").status_code == 200
    scrapes = []
    for _ in range(6):  # on new connections: scrapes reach both processes
        with http_from() as http:
            response = http.get(api.base_url + "/metrics")
            assert response.status_code == 200
            scrapes.append(_health_count(response.text) - start)
    assert scrapes == [30.0] * 6
    frozen = [line for line in response.text.splitlines() if line.startswith("postroom_gc_frozen_objects ")]
    assert len(frozen) == 1 and float(frozen[0].split()[1]) > 50_000


def test_twenty_identical_idempotent_sends_at_once_make_one_message(backend: Backend, api: ApiProcess) -> None:
    ensure_sending_domain(backend)
    key = backend.create_key().key
    subject = f"once across processes {time.time_ns()}"
    body = {"from": "app@sender.test", "to": ["someone@example.org"], "subject": subject, "text": "Hello."}
    headers = {**bearer(key), "Idempotency-Key": f"processes-{time.time_ns()}"}

    def send(_: int) -> tuple[int, str, str | None]:
        with httpx.Client(timeout=30) as http:  # a connection of its own: the sends reach both processes
            response = http.post(api.api_url + "/emails", json=body, headers=headers)
        return response.status_code, response.json()["data"]["request_id"], response.headers.get("Idempotency-Replayed")

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(send, range(20)))
    assert {status for status, _, _ in outcomes} == {200}
    assert len({request_id for _, request_id, _ in outcomes}) == 1
    assert sum(replayed == "true" for _, _, replayed in outcomes) == 19
    stored = backend.read(
        lambda conn: conn.execute(
            select(func.count()).select_from(messages).where(messages.c.subject == subject)
        ).scalar_one()
    )
    assert stored == 1


def test_sigterm_stops_every_process_cleanly_and_a_crashed_one_stops_the_rest(backend: Backend, tmp_path: Path) -> None:
    stopped = ApiProcess(backend.subprocess_env(), tmp_path / "stopped.log", processes=2).start()
    children = stopped.children()
    assert stopped.terminate(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in children)

    crashed = ApiProcess(backend.subprocess_env(), tmp_path / "crashed.log", processes=2).start()
    first, second = crashed.children()
    os.kill(first, signal.SIGKILL)
    assert crashed.process is not None
    assert crashed.process.wait(timeout=30) == 1
    deadline = time.monotonic() + 10
    while Path(f"/proc/{second}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{second}").exists(), "the other process was left running"
    assert f"API process 0 (pid {first}) exited with -9; stopping the others" in crashed.log_text()


def test_when_the_parent_is_killed_its_processes_leave_and_the_next_start_counts_afresh(
    backend: Backend, tmp_path: Path
) -> None:
    first = ApiProcess(backend.subprocess_env(), tmp_path / "first.log", processes=2).start()
    children = first.children()
    for _ in range(5):
        with http_from() as http:
            assert http.get(first.api_url + "/health").status_code == 200
    first.kill()  # SIGKILL: the parent cleans nothing up
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "orphaned API processes kept running"
    assert (backend.settings.data_dir / f"api-metrics-{first.port}").exists()  # left behind by the killed parent

    # on the port the orphans would have held
    second = ApiProcess(backend.subprocess_env(), tmp_path / "second.log", processes=2, port=first.port).start()
    try:
        for _ in range(3):
            with http_from() as http:
                assert http.get(second.api_url + "/health").status_code == 200
        with http_from() as http:
            assert _health_count(http.get(second.base_url + "/metrics").text) == 3.0  # the first run's 5 are gone
    finally:
        assert second.terminate(timeout=30) == 0
    assert not (backend.settings.data_dir / f"api-metrics-{first.port}").exists()


def test_a_port_in_use_is_refused_before_any_process_starts(backend: Backend, api: ApiProcess) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "postroom", "api", "--port", str(api.port), "--processes", "2"],
        env=backend.subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 2
    assert f"cannot listen on 127.0.0.1:{api.port}: Address already in use" in second.stderr


@pytest.mark.parametrize("value", ["0", "65", "two"])
def test_a_process_count_out_of_range_is_refused_naming_the_setting(value: str) -> None:
    from postroom.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="POSTROOM_API_PROCESSES"):
        load_settings({"POSTROOM_API_PROCESSES": value})
    if value.isdigit():
        with pytest.raises(ConfigError, match="--processes"):
            load_settings({}, api_processes=int(value))
