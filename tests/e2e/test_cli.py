"""The command line refuses bad input with one line on stderr that names the problem."""

from __future__ import annotations

import subprocess
import sys

import pytest

from postroom.core.clock import utcnow
from tests.conftest import Backend, Server, http_from, run_cli


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("postroom: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--allowed-ips", "10.0.0.1/24"], "allowed-ips: '10.0.0.1/24' has host bits set (did you mean 10.0.0.0/24?)"),
        (["--allowed-ips", "203.0.113.50, foo, 1.2.3"], "'foo' is not an IP address or CIDR range"),
        (["--allowed-ips", "fe80::1%eth0"], "'fe80::1%eth0' has a zone id"),
        (["--allowed-ips", "10.0.0.0/33"], "'10.0.0.0/33' is not an IP address or CIDR range"),
        (["--allowed-ips", "010.1.1.1"], "'010.1.1.1' is not an IP address or CIDR range"),
        (["--permission", "admin"], "argument --permission: invalid choice: 'admin'"),
        (["--expires-in-days", "0"], "argument --expires-in-days: must be a whole number from 1 to 3650, got '0'"),
        (["--expires-in-days", "soon"], "argument --expires-in-days: must be a whole number from 1 to 3650"),
    ],
)
def test_keys_create_refuses_bad_input(backend: Backend, args: list[str], expected: str) -> None:
    result = run_cli(backend, "keys", "create", "--name", "x", *args)
    assert result.returncode == 2
    assert expected in one_error_line(result)
    assert result.stdout == ""


def test_a_blank_name_is_refused(backend: Backend) -> None:
    result = run_cli(backend, "keys", "create", "--name", "  ")
    assert result.returncode == 2
    assert one_error_line(result) == "postroom: error: name: The name field is required."


def test_an_unknown_key_id_exits_1(backend: Backend) -> None:
    for command in (["revoke", "key_nope"], ["rotate", "key_nope"], ["update", "key_nope", "--name", "x"]):
        result = run_cli(backend, "keys", *command)
        assert result.returncode == 1, command
        assert one_error_line(result) == "postroom: error: API key not found. (key_nope)"


def test_an_update_with_nothing_to_change_is_refused(backend: Backend) -> None:
    result = run_cli(backend, "keys", "update", backend.create_key().record.id)
    assert result.returncode == 2
    assert "nothing to change" in one_error_line(result)


def test_a_bad_update_changes_nothing(backend: Backend) -> None:
    created = backend.create_key(allowed_ips="127.0.0.1", name="Keep me")
    result = run_cli(backend, "keys", "update", created.record.id, "--name", "New", "--allowed-ips", "1.2.3.4/8")
    assert result.returncode == 2
    record = backend.get_key(created.record.id)
    assert (record.name, record.allowed_ips) == ("Keep me", "127.0.0.1")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("POSTROOM_TRUSTED_PROXIES", "*", "POSTROOM_TRUSTED_PROXIES must not contain '*'"),
        ("POSTROOM_TRUSTED_PROXIES", "10.0.0.1, proxy.local", "POSTROOM_TRUSTED_PROXIES: 'proxy.local' is not an IP"),
        ("POSTROOM_PORT", "http", "POSTROOM_PORT must be an integer"),
        ("POSTROOM_DATABASE_URL", "mysql://x/y", "POSTROOM_DATABASE_URL must start with postgresql://"),
    ],
)
def test_serve_refuses_bad_settings(backend: Backend, variable: str, value: str, expected: str) -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "postroom", "serve", "--port", "1"],
        env=backend.subprocess_env({variable: value}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert expected in one_error_line(result)


def test_keys_list_shows_what_an_operator_needs(backend: Backend) -> None:
    created = backend.create_key(name="Listed", permission="sending", allowed_ips="203.0.113.0/24")
    result = run_cli(backend, "keys", "list")
    assert result.returncode == 0
    line = next(line for line in result.stdout.splitlines() if created.record.id in line)
    for part in ("Listed", created.key[:12], "Sending Only", "203.0.113.0/24", "active", "never"):
        assert part in line
    assert created.key not in result.stdout


def test_metrics_are_served_to_this_machine_only(server: Server) -> None:
    with http_from("127.0.0.1") as http:
        response = http.get(server.base_url + "/metrics")
    assert response.status_code == 200
    assert "postroom_http_requests_total" in response.text
    with http_from("127.0.0.2") as http:
        response = http.get(server.base_url + "/metrics")
    assert response.status_code == 403
    assert response.json() == {"message": "Access denied. Your IP address is not allowed."}


def test_a_started_server_keeps_its_start_up_heap_out_of_the_collector(server: Server) -> None:
    """After start-up the objects it made are frozen, so a full collection does not walk them (cli.py)."""
    with http_from("127.0.0.1") as http:
        response = http.get(server.base_url + "/metrics")
    assert response.status_code == 200
    [line] = [x for x in response.text.splitlines() if x.startswith("postroom_gc_frozen_objects ")]
    assert float(line.split()[1]) > 50_000  # the modules and the application, not a handful of stragglers


NUMERIC_OPTIONS = [
    (["serve"], "--port"),
    (["api"], "--port"),
    (["api"], "--processes"),
    *((["domains", command, "x.test"], "--team") for command in ("add", "approve", "verify", "rotate-dkim", "show")),
    (["domains", "list"], "--team"),
    (["suppressions", "list"], "--team"),
    (["suppressions", "remove", "a@b.test"], "--team"),
    (["send-test", "--from", "a@b.test", "--to", "c@d.test"], "--team"),
    (["keys", "create", "--name", "x"], "--expires-in-days"),
    (["keys", "create", "--name", "x"], "--team"),
    (["keys", "rotate", "key_x"], "--grace-hours"),
    (["keys", "list"], "--team"),
    (["users", "create-admin", "a@b.test"], "--team"),
]
BAD_NUMBERS = ["nan", "inf", "-inf", "1e308", "-1", "99999999999999999999", "0x10", ""]


@pytest.mark.parametrize(("command", "option"), NUMERIC_OPTIONS, ids=[" ".join(c[:2]) + o for c, o in NUMERIC_OPTIONS])
def test_every_numeric_option_refuses_non_numbers_and_out_of_range_values_in_one_line(
    command: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process: argparse refuses before anything is opened, so no database is involved."""
    from postroom.cli import main

    for value in BAD_NUMBERS:
        with pytest.raises(SystemExit) as exited:
            main([*command, f"{option}={value}"])
        assert exited.value.code == 2, (option, value)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"postroom: error: argument {option}: must be"), captured.err
        assert captured.out == ""


@pytest.mark.parametrize("hours", ["nan", "inf", "1e308", "721"])
def test_keys_rotate_with_a_grace_that_is_not_a_finite_number_of_hours_exits_2(backend: Backend, hours: str) -> None:
    key = backend.create_key(name="rotate me")
    result = run_cli(backend, "keys", "rotate", key.record.id, "--grace-hours", hours)
    assert result.returncode == 2
    assert one_error_line(result) == (
        f"postroom: error: argument --grace-hours: must be a number from 0 to 720, got '{hours}'"
    )
    assert backend.get_key(key.record.id).status(utcnow()) == "active"  # nothing rotated
