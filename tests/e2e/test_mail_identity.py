"""A mail identity nobody can check (``POSTROOM_MAIL_HOSTNAME`` unset, or not a public DNS name) is said loudly:
one warning line when ``postroom serve`` and ``postroom worker`` start, a ``warnings`` entry in
``/api/health/ready`` (still ready), and a warning from every ``postroom domains`` command. A public name gets
none of them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import Backend, Server, run_cli
from tests.system.cluster import WorkerProcess

UNSET = "POSTROOM_MAIL_HOSTNAME is not set"
NOT_PUBLIC = "which is not a public DNS name"
PUBLIC_NAME = "mail.postroom-example.com"


def warning_lines(log: str) -> list[dict[str, str]]:
    """The JSON log lines that warn about the mail hostname."""
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [e for e in entries if e.get("level") == "warning" and "POSTROOM_MAIL_HOSTNAME" in e.get("event", "")]


@pytest.mark.parametrize(
    ("mail_hostname", "expected"),
    [(None, UNSET), ("localhost.localdomain", NOT_PUBLIC), ("postroom", NOT_PUBLIC), (PUBLIC_NAME, None)],
    ids=["unset", "localdomain", "single-label", "public"],
)
def test_serve_warns_once_and_readiness_reports_a_mail_hostname_nobody_can_check(
    backend: Backend, tmp_path: Path, mail_hostname: str | None, expected: str | None
) -> None:
    env = {} if mail_hostname is None else {"POSTROOM_MAIL_HOSTNAME": mail_hostname}
    server = Server(backend, tmp_path / "server.log", env=env).start()
    try:
        ready = httpx.get(server.api_url + "/health/ready", timeout=10)
    finally:
        server.stop()
    assert ready.status_code == 200
    data = ready.json()["data"]
    assert data["status"] == "ready"
    warned = warning_lines(server.log_text())
    if expected is None:
        assert data["warnings"] == [] and warned == []
        return
    [warning] = data["warnings"]
    assert warning["code"] == "mail_hostname" and expected in warning["message"]
    assert [w["event"] for w in warned] == [warning["message"]]  # one line, the same words


def test_the_worker_warns_at_start_about_an_unset_mail_hostname(backend: Backend, tmp_path: Path) -> None:
    worker = WorkerProcess(backend.subprocess_env(), tmp_path / "worker.log")
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while "worker started" not in worker.log_text():
            assert worker.alive(), worker.log_text()
            assert time.monotonic() < deadline, worker.log_text()
            time.sleep(0.1)
        while not warning_lines(worker.log_text()):  # logged just after the start line
            assert time.monotonic() < deadline, worker.log_text()
            time.sleep(0.1)
    finally:
        worker.terminate()
    [warning] = warning_lines(worker.log_text())
    assert UNSET in warning["event"]


def test_domain_commands_say_the_records_are_wrong_until_the_mail_hostname_is_set(backend: Backend) -> None:
    added = run_cli(backend, "domains", "add", "identity-check.test")
    assert added.returncode == 0, added.stderr
    for command in (["list"], ["list", "--json"], ["show", "identity-check.test"]):
        unset = run_cli(backend, "domains", *command)
        assert unset.returncode == 0, unset.stderr
        [line] = unset.stderr.strip().splitlines()
        assert line.startswith("postroom: warning: the DNS records are wrong until this is fixed: " + UNSET)
        if "--json" in command:
            assert "identity-check.test" in [d["domain"] for d in json.loads(unset.stdout)]
        local = run_cli(backend, "domains", *command, env={"POSTROOM_MAIL_HOSTNAME": "localhost"})
        assert NOT_PUBLIC in local.stderr
        public = run_cli(backend, "domains", *command, env={"POSTROOM_MAIL_HOSTNAME": PUBLIC_NAME})
        assert public.returncode == 0 and public.stderr == ""
    shown = run_cli(backend, "domains", "show", "identity-check.test", env={"POSTROOM_MAIL_HOSTNAME": PUBLIC_NAME})
    assert f"v=spf1 a:{PUBLIC_NAME} ~all" in shown.stdout
