"""``postroom serve --dev``'s preparation on both databases: the approved ``example.test`` and one sandbox key,
saved with mode 0600, reused at the next start, replaced once revoked; each creation in the audit log."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

from postroom.apikeys import service as keys_service
from postroom.audit import service as audit
from postroom.audit.service import Actor
from postroom.auth.keys import key_digest
from postroom.core.clock import utcnow
from postroom.domains import service as domains_service
from postroom.models import api_keys
from postroom.system import devmode
from tests.conftest import Backend


def _key_id(backend: Backend, key: str) -> str:
    return str(
        backend.read(lambda conn: conn.execute(api_keys.select().where(api_keys.c.digest == key_digest(key))).one().id)
    )


def test_dev_mode_makes_its_domain_and_one_saved_sandbox_key(own_backend: Backend, tmp_path: Path) -> None:
    settings = dataclasses.replace(own_backend.settings, data_dir=tmp_path / "data")
    first = own_backend.loop.run(devmode.prepare(own_backend.db, settings))
    assert first.created and first.key.startswith("lttr_sandbox_")
    assert first.key_file == tmp_path / "data" / "dev-sandbox-key"
    assert first.key_file.read_text().strip() == first.key
    assert stat.S_IMODE(first.key_file.stat().st_mode) == 0o600
    domain = own_backend.read(
        lambda conn: domains_service.find_domain(conn, team_id=own_backend.team_id, name="example.test")
    )
    assert domain is not None and domain.can_send
    record = own_backend.get_key(_key_id(own_backend, first.key))
    assert record.sandbox and record.permission.value == "full"

    again = own_backend.loop.run(devmode.prepare(own_backend.db, settings))
    assert (again.created, again.key) == (False, first.key)

    own_backend.write(
        lambda conn: keys_service.revoke_key(
            conn, key_id=record.id, team_id=None, actor=Actor(name="tests"), now=utcnow()
        )
    )
    replaced = own_backend.loop.run(devmode.prepare(own_backend.db, settings))
    assert replaced.created and replaced.key != first.key
    assert replaced.key_file.read_text().strip() == replaced.key

    entries = own_backend.read(lambda conn: audit.list_entries(conn, team_id=own_backend.team_id))
    made = [(e.actor, e.action) for e in entries if e.actor == devmode.ACTOR]
    assert sorted(made) == [
        (devmode.ACTOR, "api_key.created"),
        (devmode.ACTOR, "api_key.created"),
        (devmode.ACTOR, "domain.added"),
    ]
