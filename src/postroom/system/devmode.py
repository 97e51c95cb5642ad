"""``postroom serve --dev``: what a newcomer needs to try Postroom without sending real mail.

At every ``--dev`` start, in one transaction: the default team exists; the domain ``example.test`` (a name reserved
for testing, which no real mail server answers for) is registered and approved; and a sandbox key exists whose
clear text is kept in ``<data dir>/dev-sandbox-key`` (mode 0600). The key is created at the first start, or again
when the saved one has been revoked or has expired; otherwise the saved key is printed again. Only a key that
``--dev`` created is ever written to disk, and it is a sandbox key: it can read and send into the local inbox,
never deliver mail or change anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection

from postroom.apikeys import service as keys_service
from postroom.apikeys.service import ApiKeyRecord
from postroom.audit.service import Actor
from postroom.auth import queries as auth_queries
from postroom.auth.keys import is_sandbox, is_well_formed, key_digest
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.db.engine import Database
from postroom.domains import service as domains_service
from postroom.system import defaults

DEV_DOMAIN = "example.test"
DEV_KEY_NAME = "Development sandbox (postroom serve --dev)"
ACTOR = "postroom serve --dev"
KEY_FILE_NAME = "dev-sandbox-key"


@dataclass(frozen=True, slots=True)
class DevSetup:
    key: str
    created: bool
    key_file: Path
    domain: str


def key_file(settings: Settings) -> Path:
    return settings.data_dir / KEY_FILE_NAME


def _saved_key(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text if is_well_formed(text) and is_sandbox(text) else None


async def prepare(db: Database, settings: Settings) -> DevSetup:
    """Make sure the development domain and sandbox key exist; the key to print, and whether it is new."""
    path = key_file(settings)
    saved = _saved_key(path)
    now = utcnow()

    def work(conn: Connection) -> tuple[str, bool]:
        team_id = defaults.ensure_default_team(conn, now=now)
        if domains_service.find_domain(conn, team_id=team_id, name=DEV_DOMAIN) is None:
            domains_service.add_domain(
                conn, team_id=team_id, name=DEV_DOMAIN, approve=True, actor=Actor(ACTOR), now=now, settings=settings
            )
        if saved is not None:
            _, row = auth_queries.guard_lookup(conn, None, key_digest(saved))
            if row is not None and ApiKeyRecord.from_mapping(row).status(now) == "active":
                return saved, False
        created = keys_service.create_key(
            conn,
            team_id=team_id,
            name=DEV_KEY_NAME,
            permission="full",
            allowed_ips=None,
            expires_at=None,
            created_by=ACTOR,
            actor=Actor(ACTOR),
            now=now,
            sandbox=True,
        )
        return created.key, True

    key, created = await db.write(work)
    if created:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(key + "\n")
    return DevSetup(key=key, created=created, key_file=path, domain=DEV_DOMAIN)
