"""A live ``postroom serve`` of its own per database engine for the security suite, and two teams' keys.

The server gets its own database (``own_backend``) because the suite creates and deletes objects at random, and
its lockout threshold is raised: the suite sends many keyless requests on purpose, and the lockout (tested in
tests/e2e/test_access_control.py) would otherwise block the test's own address after the fifth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection

from postroom.core.clock import utcnow
from postroom.teams import queries as team_queries
from tests.conftest import Backend, Server, mail_env
from tests.support.dns_server import DnsServer
from tests.support.smtp_sink import SmtpSink
from tests.system.cluster import ensure_sending_domain


@dataclass(frozen=True)
class Tenant:
    team_id: int
    full_key: str
    sending_key: str
    domain: str


@dataclass(frozen=True)
class SecurityTarget:
    server: Server
    backend: Backend
    a: Tenant
    b: Tenant


def _second_team(backend: Backend) -> int:
    def create(conn: Connection) -> int:
        now = utcnow()
        team_id = team_queries.insert_team(conn, "Team B", now)
        project_id = team_queries.insert_project(conn, team_id, "Team B project", is_default=True, now=now)
        try:  # templates need a folder; the templates package makes a new project's default ones
            from postroom.templates import service as templates_service

            templates_service.create_default_folders(conn, team_id=team_id, project_id=project_id, now=now)
        except (ImportError, AttributeError):
            pass
        return team_id

    return backend.write(create)


def _tenant(backend: Backend, team_id: int, domain: str) -> Tenant:
    ensure_sending_domain(backend, domain, team_id=team_id)
    return Tenant(
        team_id=team_id,
        full_key=backend.create_key(team_id=team_id, name="full").key,
        sending_key=backend.create_key(team_id=team_id, name="sending", permission="sending").key,
        domain=domain,
    )


@pytest.fixture(scope="module")
def target(
    own_backend: Backend,
    tmp_path_factory: pytest.TempPathFactory,
    dns_server: DnsServer,
    smtp_sink: SmtpSink,
) -> Iterator[SecurityTarget]:
    env = {
        **mail_env(dns_server, smtp_sink),
        "POSTROOM_AUTH_LOCKOUT_FAILURES": "1000000",
        "POSTROOM_RATE_LIMIT": "off",
        "POSTROOM_SEND_RATE_LIMIT": "off",
        "POSTROOM_WEBHOOK_ALLOW_PRIVATE": "1",  # webhooks at loopback targets (SSRF has its own suite)
    }
    log = tmp_path_factory.mktemp(f"security-{own_backend.name}") / "server.log"
    server = Server(own_backend, log, env=env).start()
    a = _tenant(own_backend, own_backend.team_id, "a-sender.test")
    b = _tenant(own_backend, _second_team(own_backend), "b-sender.test")
    yield SecurityTarget(server=server, backend=own_backend, a=a, b=b)
    server.stop()
