"""When PostgreSQL cannot give the API a connection, requests get 503 with Retry-After (nothing was done, a retry
may succeed), not a 500; once the database is back, the same server answers normally."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from tests.conftest import Backend, Server, bearer, http_from
from tests.support.postgres_instance import cut_off, let_in
from tests.support.tcp_proxy import TcpProxy


@pytest.fixture
def pg_server(own_backend: Backend, tmp_path: Path) -> Iterator[Server]:
    """A server on a database of its own: the outage must not reach the servers other tests share."""
    if own_backend.name != "postgres":
        pytest.skip("a PostgreSQL outage")
    server = Server(own_backend, tmp_path / "server.log").start()
    yield server
    server.stop()


def _reconnect(backend: Backend) -> None:
    """The test process's own pool lost its connections too: the first use after the outage finds them dead and
    invalidates the pool, the next one connects afresh."""
    for use in (backend.read, backend.write):
        for _ in range(3):
            try:
                use(lambda conn: conn.execute(text("SELECT 1")))
                break
            except sqlalchemy.exc.DBAPIError:
                continue


def test_an_unreachable_database_is_503_and_the_server_recovers(own_backend: Backend, pg_server: Server) -> None:
    backend = own_backend
    database = backend.env["POSTROOM_DATABASE_URL"].rsplit("/", 1)[1]
    key = backend.create_key().key
    with http_from() as http:
        assert http.get(pg_server.api_url + "/projects", headers=bearer(key)).status_code == 200
        try:
            cut_off(database)  # the server's pooled connections die, and no new one is allowed
            refused = http.get(pg_server.api_url + "/projects", headers=bearer(key))
        finally:
            let_in(database)
            _reconnect(backend)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error_code"] == "service_unavailable"
        assert refused.headers["Retry-After"] == "1"
        assert http.get(pg_server.api_url + "/projects", headers=bearer(key)).status_code == 200
    assert "unhandled error" not in pg_server.log_text()


@pytest.fixture
def proxied_pg_server(own_backend: Backend, tmp_path: Path) -> Iterator[tuple[Server, TcpProxy]]:
    """A server whose every database connection goes through a proxy the test can turn into a black hole."""
    if own_backend.name != "postgres":
        pytest.skip("a PostgreSQL outage")
    url = own_backend.env["POSTROOM_DATABASE_URL"]
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    proxy = TcpProxy((address.hostname, address.port))
    proxied = url.replace(f"@{address.hostname}:{address.port}/", f"@127.0.0.1:{proxy.port}/")
    server = Server(own_backend, tmp_path / "server.log", env={"POSTROOM_DATABASE_URL": proxied}).start()
    yield server, proxy
    server.stop()
    proxy.close()


def test_an_unreachable_database_answers_503_fast_instead_of_hanging(
    own_backend: Backend, proxied_pg_server: tuple[Server, TcpProxy]
) -> None:
    server, proxy = proxied_pg_server
    key = own_backend.create_key().key
    with http_from() as http:
        assert http.get(server.api_url + "/projects", headers=bearer(key)).status_code == 200
        proxy.cut()  # the host is gone: open connections reset, new ones never answered
        try:
            for _ in range(4):  # the first finds its pooled connection dead, the rest time out connecting
                started = time.monotonic()
                response = http.get(server.api_url + "/projects", headers=bearer(key), timeout=15)
                took = time.monotonic() - started
                assert response.status_code == 503, response.text
                assert response.json()["error_code"] == "service_unavailable"
                assert took < 2.0, f"answered after {took:.2f} s"
            ready = http.get(server.api_url + "/health/ready", timeout=15)
            assert ready.status_code == 503
            assert ready.json()["reason"] == "database_unreachable"
            page = http.get(server.base_url + "/invite/" + "x" * 40, timeout=15)  # a page that reads the database
            assert page.status_code == 503
            assert page.headers["Retry-After"] == "1"
            assert "Temporarily unavailable" in page.text and "Traceback" not in page.text
        finally:
            proxy.restore()
        deadline = time.monotonic() + 30
        while http.get(server.api_url + "/projects", headers=bearer(key)).status_code != 200:
            assert time.monotonic() < deadline, "the server did not recover"
            time.sleep(0.1)
    assert "unhandled error" not in server.log_text()
