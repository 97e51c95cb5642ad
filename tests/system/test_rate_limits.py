"""Per-team rate limits: headers on every counted response, 429 with Retry-After, the order of
checks (401 → IP 403 → scope 403 → 429 → 422), and one window shared by every ``postroom api`` process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postroom.auth.ratelimit import DatabaseStorage
from postroom.config import ConfigError, load_settings
from tests.conftest import Backend, LoopThread, bearer, http_from
from tests.system.cluster import ApiProcess, new_team

RATE_MESSAGE = "Rate limit exceeded. Please slow down your requests."


@pytest.fixture
def limited_api(backend: Backend, tmp_path: Path) -> Iterator[ApiProcess]:
    """An API process allowing each team 5 requests a minute, 2 of them sends."""
    env = backend.subprocess_env({"POSTROOM_RATE_LIMIT": "5/minute", "POSTROOM_SEND_RATE_LIMIT": "2/minute"})
    api = ApiProcess(env, tmp_path / "api.log").start()
    yield api
    api.terminate()


def test_every_counted_response_carries_the_headers_and_the_sixth_request_gets_429(
    backend: Backend, limited_api: ApiProcess
) -> None:
    key = backend.create_key(team_id=new_team(backend)).key
    with http_from() as http:
        seen = []
        for path in ["/projects", "/emails/unknown-id", "/projects", "/domains", "/projects"]:
            response = http.get(limited_api.api_url + path, headers=bearer(key))
            assert response.status_code in (200, 404), response.text
            seen.append(int(response.headers["X-RateLimit-Remaining"]))
            assert response.headers["X-RateLimit-Limit"] == "5"
            assert int(response.headers["X-RateLimit-Reset"]) > 0
        assert seen == [4, 3, 2, 1, 0]
        refused = http.get(limited_api.api_url + "/projects", headers=bearer(key))
    assert refused.status_code == 429
    assert refused.json() == {"message": RATE_MESSAGE, "error_code": "rate_limit_exceeded"}
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_sends_have_their_own_tighter_limit_and_it_comes_before_validation(
    backend: Backend, limited_api: ApiProcess
) -> None:
    key = backend.create_key(team_id=new_team(backend)).key
    with http_from() as http:
        statuses = []
        for _ in range(3):
            response = http.post(limited_api.api_url + "/emails", json={"to": []}, headers=bearer(key))
            statuses.append(response.status_code)
            assert response.headers["X-RateLimit-Limit"] == "2"
        assert statuses == [422, 422, 429]  # the third is refused before its (invalid) body is looked at
        assert http.get(limited_api.api_url + "/projects", headers=bearer(key)).status_code == 200


def test_authentication_ip_and_scope_refusals_come_before_the_rate_limit_and_do_not_count(
    backend: Backend, limited_api: ApiProcess
) -> None:
    team = new_team(backend)
    full = backend.create_key(team_id=team).key
    sending = backend.create_key(team_id=team, permission="sending").key
    fenced = backend.create_key(team_id=team, allowed_ips="203.0.113.9").key
    with http_from() as http:
        for _ in range(5):
            assert http.get(limited_api.api_url + "/projects", headers=bearer(full)).status_code == 200
        assert http.get(limited_api.api_url + "/projects", headers=bearer(full)).status_code == 429
        unknown = http.get(limited_api.api_url + "/projects", headers=bearer("lttr_" + "A" * 64))
        assert unknown.status_code == 401
        assert "X-RateLimit-Limit" not in unknown.headers
        fenced_answer = http.get(limited_api.api_url + "/projects", headers=bearer(fenced))
        assert fenced_answer.status_code == 403
        assert fenced_answer.json() == {"message": "Access denied. Your IP address is not allowed."}
        scoped = http.get(limited_api.api_url + "/domains", headers=bearer(sending))
        assert scoped.status_code == 403
        assert scoped.json()["error_code"] == "insufficient_scope"
        assert "X-RateLimit-Limit" not in scoped.headers
        assert http.get(limited_api.api_url + "/health").status_code == 200  # public routes are never counted


@pytest.mark.parametrize("database", ["sqlite_backend", "pg_backend"])
def test_two_api_processes_share_one_window_without_redis(
    database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """On PostgreSQL the counters are in the database; on SQLite in the counters file beside it."""
    backend: Backend = request.getfixturevalue(database)
    env = backend.subprocess_env({"POSTROOM_RATE_LIMIT": "10/minute"})
    apis = [ApiProcess(env, tmp_path / f"api{n}.log").start() for n in range(2)]
    try:
        key = backend.create_key(team_id=new_team(backend)).key
        statuses = []
        with http_from() as http:
            for i in range(14):
                statuses.append(http.get(apis[i % 2].api_url + "/projects", headers=bearer(key)).status_code)
    finally:
        for api in apis:
            api.terminate()
    assert statuses == [200] * 10 + [429] * 4


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real Redis (Debian's redis-server) on a free loopback port, with nothing kept on disk."""
    if shutil.which("redis-server") is None:
        if os.environ.get("POSTROOM_REQUIRE_POSTGRES") == "1":  # CI installs it: missing there is a failure
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(10)


def test_two_api_processes_share_one_window_in_redis(backend: Backend, redis_url: str, tmp_path: Path) -> None:
    env = backend.subprocess_env({"POSTROOM_RATE_LIMIT": "10/minute", "POSTROOM_REDIS_URL": redis_url})
    apis = [ApiProcess(env, tmp_path / f"api{n}.log").start() for n in range(2)]
    try:
        key = backend.create_key(team_id=new_team(backend)).key
        statuses, remaining = [], []
        with http_from() as http:
            for i in range(14):
                response = http.get(apis[i % 2].api_url + "/projects", headers=bearer(key))
                statuses.append(response.status_code)
                remaining.append(int(response.headers["X-RateLimit-Remaining"]))
        counter_keys = subprocess.run(
            ["redis-cli", "-u", redis_url, "--scan"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.split()
    finally:
        for api in apis:
            api.terminate()
    assert statuses == [200] * 10 + [429] * 4
    assert remaining == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0, 0, 0, 0]
    assert counter_keys, "the counters live in Redis"


def test_database_counters_lose_no_count_under_concurrent_processes(
    pg_backend: Backend, loop_thread: LoopThread
) -> None:
    url = pg_backend.settings.effective_database_url

    async def hammer() -> int:
        stores = [DatabaseStorage("postroom+" + url) for _ in range(3)]
        try:
            counts = await asyncio.gather(*(stores[i % 3].incr("test/concurrency", 60) for i in range(300)))
            return max(counts)
        finally:
            for store in stores:
                await store.close()

    assert loop_thread.run(hammer()) == 300


def test_database_counters_count_a_requests_windows_together_and_lose_none(
    pg_backend: Backend, loop_thread: LoopThread
) -> None:
    url = pg_backend.settings.effective_database_url
    prefix = f"test/many/{time.monotonic_ns()}"

    async def hammer() -> list[list[tuple[int, float]]]:
        stores = [DatabaseStorage("postroom+" + url) for _ in range(3)]
        try:  # the keys in both orders: one statement locks its rows in one order, so none deadlock
            windows = [[(f"{prefix}/all", 60), (f"{prefix}/send", 30)], [(f"{prefix}/send", 30), (f"{prefix}/all", 60)]]
            return await asyncio.gather(*(stores[i % 3].incr_many(windows[i % 2]) for i in range(200)))
        finally:
            for store in stores:
                await store.close()

    started = time.time()
    answers = [answer if i % 2 == 0 else answer[::-1] for i, answer in enumerate(loop_thread.run(hammer()))]
    assert sorted(all_ for (all_, _), _send in answers) == list(range(1, 201))  # no count lost
    assert sorted(send for _all, (send, _) in answers) == list(range(1, 201))
    assert all(abs(all_ends - (started + 60)) < 5 for (_, all_ends), _send in answers)  # each answer in its order
    assert all(abs(send_ends - (started + 30)) < 5 for _all, (_, send_ends) in answers)


def test_redis_counters_count_a_requests_windows_in_one_call_and_restart_ended_ones(redis_url: str) -> None:
    from postroom.auth.ratelimit import RedisStorage

    async def scenario() -> list[list[tuple[int, float]]]:
        store = RedisStorage("postroom+" + redis_url)
        try:
            seen = [await store.incr_many([("all", 60), ("send", 1)]) for _ in range(3)]
            await asyncio.sleep(1.2)  # "send"'s window ends; "all"'s goes on
            seen.append(await store.incr_many([("all", 60), ("send", 1)]))
            return seen
        finally:
            await store.close()

    started = time.time()
    seen = asyncio.run(scenario())
    assert [[count for count, _ in answer] for answer in seen] == [[1, 1], [2, 2], [3, 3], [4, 1]]
    assert all(started + 58 < answer[0][1] < started + 62 for answer in seen)
    assert started < seen[0][1][1] < started + 2 and seen[3][1][1] > started + 1.1


def test_a_redis_url_of_another_kind_is_refused_naming_the_variable() -> None:
    from postroom.auth.ratelimit import open_storage

    with pytest.raises(ConfigError, match="POSTROOM_REDIS_URL"):
        open_storage(load_settings({"POSTROOM_REDIS_URL": "memcached://127.0.0.1:11211"}))


@pytest.mark.parametrize("value", ["fast", "10/fortnight", "-1/second"])
def test_a_malformed_rate_limit_setting_stops_postroom_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="POSTROOM_RATE_LIMIT"):
        load_settings({"POSTROOM_RATE_LIMIT": value})


def test_rate_limits_can_be_switched_off() -> None:
    assert load_settings({"POSTROOM_RATE_LIMIT": "off", "POSTROOM_SEND_RATE_LIMIT": "OFF"}).rate_limit == "off"


def test_a_send_limit_equal_to_the_general_one_counts_each_send_once(tmp_path: Path) -> None:
    from postroom.auth.ratelimit import FileStorage, RateLimiter, _items
    from postroom.auth.scopes import Scope

    limiter = RateLimiter(FileStorage(path=tmp_path / "counters"), general=_items("4/minute"), send=_items("4/minute"))

    async def sends() -> list[int | None]:
        verdicts = [await limiter.hit(7, Scope.EMAILS_SEND) for _ in range(5)]
        return [None if v is None else v.retry_after for v in verdicts]

    retry_afters = asyncio.run(sends())
    assert retry_afters[:4] == [None] * 4  # four sends fit a limit of four
    assert retry_afters[4] is not None
