"""Fixtures for the system tests: a fresh database per module, on PostgreSQL or on SQLite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Backend, LoopThread, _make_backend


def _module_backend(name: str, tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread) -> Iterator[Backend]:
    backend = _make_backend(name, tmp_path_factory.mktemp(f"system-{name}"), loop_thread)
    yield backend
    loop_thread.run(backend.db.close())
    for step in backend.cleanup:
        step()


@pytest.fixture(scope="module")
def pg_backend(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread) -> Iterator[Backend]:
    """A new database on the test PostgreSQL cluster; skipped without one unless POSTROOM_REQUIRE_POSTGRES=1."""
    yield from _module_backend("postgres", tmp_path_factory, loop_thread)


@pytest.fixture(scope="module")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory, loop_thread: LoopThread) -> Iterator[Backend]:
    """A new SQLite database in a data directory of its own, for processes that share one installation."""
    yield from _module_backend("sqlite", tmp_path_factory, loop_thread)
