"""The deployment files in deploy/ say what the code does.

Docker does not run on the development or CI machines, so the compose file is checked by parsing it (YAML) and
comparing it with the commands and settings Postroom really has; the systemd units are parsed as INI files and
the example environment file is loaded through Postroom's own settings validation.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import yaml

from postroom.config import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _env_file() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "postroom.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def test_the_compose_file_runs_postgresql_two_apis_and_two_workers_on_one_database() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "api-1", "api-2", "worker-1", "worker-2"}
    assert services["db"]["image"].startswith("postgres:")
    for name in ("api-1", "api-2"):
        assert services[name]["command"][:2] == ["postroom", "api"]
        assert "/api/health/ready" in " ".join(services[name]["healthcheck"]["test"])
    for name in ("worker-1", "worker-2"):
        assert services[name]["command"] == ["postroom", "worker"]
    for name in ("api-1", "api-2", "worker-1", "worker-2"):
        service = services[name]
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert service["environment"]["POSTROOM_DATABASE_URL"].startswith("postgresql://postroom:postroom@db:5432/")
        assert service["stop_signal"] == "SIGTERM"
        settings = {k: v for k, v in service["environment"].items() if k != "POSTROOM_SECRET_KEY"}
        load_settings({**settings, "POSTROOM_SECRET_KEY": "x" * 64})  # every value is one Postroom accepts


def test_the_systemd_units_start_the_api_and_the_worker_with_the_shared_environment_file() -> None:
    for unit, command in (("postroom-api@.service", "postroom api"), ("postroom-worker@.service", "postroom worker")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(DEPLOY / "systemd" / unit)
        service = parser["Service"]
        assert command in service["ExecStart"]
        assert service["EnvironmentFile"] == "/etc/postroom/postroom.env"
        assert service["KillSignal"] == "SIGTERM"
        assert service["User"] == "postroom"
        assert "WantedBy" in parser["Install"]
    worker = configparser.ConfigParser(strict=False, interpolation=None)
    worker.read(DEPLOY / "systemd" / "postroom-worker@.service")
    shutdown = int(_env_file()["POSTROOM_WORKER_SHUTDOWN_TIMEOUT"])
    assert int(worker["Service"]["TimeoutStopSec"]) > shutdown  # systemd must not SIGKILL a graceful stop


def test_the_example_environment_file_holds_only_settings_postroom_accepts() -> None:
    values = _env_file()
    assert all(name.startswith("POSTROOM_") for name in values)
    settings = load_settings({**values, "POSTROOM_SECRET_KEY": "x" * 64})
    assert settings.effective_database_url.startswith("postgresql+asyncpg://")
    assert settings.rate_limit == "100/second"


def test_postroom_api_is_a_command() -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "postroom", "api", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "--port" in result.stdout
