"""Browser tests: Playwright (sync API) driving Debian's Chromium against a live ``postroom serve``.

They run on the SQLite backend only: the pages are the same on both engines (the engine-specific queries behind
them are covered on both by tests/e2e/test_dashboard.py), and a second browser pass would double the suite's time.
Screenshots of the main pages go to ``test-output/`` at the repository root (git-ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, Backend, Server, run_cli

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-output"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path


@dataclass
class Account:
    email: str
    password: str = PASSWORD
    totp_secret: str | None = None
    recovery_codes: list[str] = field(default_factory=list)


def setup_link(backend: Backend, email: str) -> str:
    """``postroom users create-admin EMAIL`` run as the operator would, returning the link it printed."""
    result = run_cli(backend, "users", "create-admin", email)
    assert result.returncode == 0, result.stderr
    match = re.search(r"(http://\S+/invite/\S+)", result.stdout)
    assert match, result.stdout
    return match.group(1)


def same_server(link: str, server: Server) -> str:
    """The CLI prints the default port; the test server listens elsewhere."""
    return server.base_url + link[link.index("/invite/") :]
