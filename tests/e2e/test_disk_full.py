"""A full disk under SQLite: sends answer 503 ``service_unavailable`` with Retry-After (nothing was stored, a retry may
succeed), readiness answers 503 with ``reason: disk_full``, and both recover once space is freed.

The disk is real: a small tmpfs mounted for the test (root only; skipped where mounting is not allowed) and filled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backend, LoopThread, Server, _make_backend, bearer
from tests.system.cluster import ensure_sending_domain


@pytest.fixture
def small_disk() -> Iterator[Path]:
    mountpoint = Path(tempfile.mkdtemp(prefix="postroom-full-"))
    mounted = subprocess.run(  # noqa: S603
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mountpoint)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        mountpoint.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)  # noqa: S603, S607
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


@pytest.fixture
def full_disk_server(small_disk: Path, loop_thread: LoopThread, tmp_path: Path) -> Iterator[tuple[Backend, Server]]:
    backend = _make_backend("sqlite", small_disk, loop_thread)
    server = Server(backend, tmp_path / "server.log").start()
    try:
        yield backend, server
    finally:
        server.stop()
        loop_thread.run(backend.db.close())


def _fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left; returns it (delete it to free the space)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as file:
        for size in (1 << 20, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    file.write(chunk)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    return filler


def _send(http: httpx.Client, server: Server, key: str, html_size: int) -> httpx.Response:
    body = {
        "from": "ops@sender.test",
        "to": ["someone@example.test"],
        "subject": "big",
        "html": "<p>" + "x" * html_size + "</p>",
    }
    return http.post(server.api_url + "/emails", json=body, headers=bearer(key), timeout=10)


def test_a_full_disk_answers_503_with_a_reason_and_recovers(full_disk_server: tuple[Backend, Server]) -> None:
    backend, server = full_disk_server
    ensure_sending_domain(backend)
    key = backend.create_key().key
    data_dir = Path(backend.env["POSTROOM_DATA_DIR"])
    with httpx.Client() as http:
        assert _send(http, server, key, 1000).status_code == 200
        filler = _fill(data_dir)
        try:
            refused = _send(http, server, key, 2_000_000)  # more than the log file has room for
            assert refused.status_code == 503, refused.text
            assert refused.json()["error_code"] == "service_unavailable"
            assert refused.headers["Retry-After"] == "1"
            ready = http.get(server.api_url + "/health/ready")
            assert ready.status_code == 503
            assert ready.json()["reason"] == "disk_full"
            assert ready.headers["Retry-After"]
        finally:
            os.unlink(filler)
        assert http.get(server.api_url + "/health/ready").status_code == 200
        assert _send(http, server, key, 2_000_000).status_code == 200
    assert "unhandled error" not in server.log_text()
