"""The audit log: who did what to which thing, when, from where, with the value before and after.

Any part of Postroom records an event with ``record`` inside the unit of work that makes the change, so the change
and its audit entry commit together or not at all. The log is append-only three times over: this package has no
update or delete path, the database refuses UPDATE and DELETE on the table (triggers, migration 0007), and every
entry carries a SHA-256 over its own fields and the previous entry's hash, so a row edited or removed behind the
database's back shows up in ``verify_chain``.

Values are stored as text (JSON for structured ones) and never hold secrets: callers pass key prefixes, not keys.

Every door names its actor the same way, through ``Actor``: a dashboard member by email, the operator's command
line as ``cli:<user>@<host>``, an API key as ``api_key:<id> (<prefix>)`` and an SMTP login as
``smtp:<id> (<prefix>)``, each with the client address where there is one. A service function that changes state
takes an ``Actor`` and calls ``Actor.record`` (or ``record_change``) inside its own unit of work.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row

from postroom.audit import queries
from postroom.db.engine import serialise_on

GENESIS_HASH = "0" * 64
MAX_VALUE_CHARS = 4000
_CONTROL = {i: f"\\x{i:02x}" for i in [*range(32), 127]}

AuditValue = str | int | bool | Mapping[str, Any] | Sequence[Any] | None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is acting, from which door: the name the audit log shows, their address and their client software."""

    name: str
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def member(cls, email: str, *, ip: str | None, user_agent: str | None = None) -> Actor:
        """A signed-in dashboard member."""
        return cls(name=email, ip=ip, user_agent=user_agent)

    @classmethod
    def operator(cls) -> Actor:
        """The command line: ``cli:<user>@<host>``."""
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return cls(name=f"cli:{user}@{socket.gethostname()}")

    @classmethod
    def api_key(cls, key_id: str, prefix: str, *, ip: str | None, user_agent: str | None = None) -> Actor:
        """A request to the HTTP API, made with the key ``key_id`` (shown by its prefix, never its secret)."""
        return cls(name=f"api_key:{key_id} ({prefix})", ip=ip, user_agent=user_agent)

    @classmethod
    def smtp_key(cls, key_id: str, prefix: str, *, ip: str | None) -> Actor:
        """An SMTP session that logged in with the key ``key_id``."""
        return cls(name=f"smtp:{key_id} ({prefix})", ip=ip)

    def record(
        self,
        conn: Connection,
        *,
        team_id: int | None,
        action: str,
        target: str | None,
        now: datetime,
        old: AuditValue = None,
        new: AuditValue = None,
    ) -> int:
        """Append what this actor did to the audit log, with their address and client software."""
        return record(
            conn,
            team_id=team_id,
            actor=self.name,
            action=action,
            target=target,
            old=old,
            new=new,
            ip=self.ip,
            now=now,
            user_agent=self.user_agent,
        )

    def record_change(
        self,
        conn: Connection,
        *,
        team_id: int | None,
        action: str,
        target: str | None,
        now: datetime,
        old: Mapping[str, Any],
        new: Mapping[str, Any],
    ) -> int | None:
        """Record only the fields that differ between ``old`` and ``new``; nothing (None) when none does."""
        changed = [name for name in {**old, **new} if old.get(name) != new.get(name)]
        if not changed:
            return None
        return self.record(
            conn,
            team_id=team_id,
            action=action,
            target=target,
            now=now,
            old={name: old.get(name) for name in changed},
            new={name: new.get(name) for name in changed},
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    team_id: int | None
    occurred_at: datetime
    actor: str
    actor_ip: str | None
    user_agent: str | None
    action: str
    target: str | None
    old_value: str | None
    new_value: str | None

    @classmethod
    def from_row(cls, row: Row[Any]) -> AuditEntry:
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__slots__})


def _clean(text: str | None, limit: int) -> str | None:
    """Control characters (CR, LF, ANSI escapes) written out as ``\\xNN`` so no field can forge a line."""
    if text is None:
        return None
    return text.translate(_CONTROL)[:limit]


def _encode(value: AuditValue) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return _clean(text, MAX_VALUE_CHARS)


def _row_hash(prev_hash: str, values: Mapping[str, Any]) -> str:
    occurred_at: datetime = values["occurred_at"]
    fields = [
        prev_hash,
        "" if values["team_id"] is None else str(values["team_id"]),
        occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        values["actor"],
        values["actor_ip"] or "",
        values["user_agent"] or "",
        values["action"],
        values["target"] or "",
        values["old_value"] if values["old_value"] is not None else "\x00",
        values["new_value"] if values["new_value"] is not None else "\x00",
    ]
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def record(
    conn: Connection,
    *,
    team_id: int | None,
    actor: str,
    action: str,
    target: str | None,
    old: AuditValue = None,
    new: AuditValue = None,
    ip: str | None,
    now: datetime,
    user_agent: str | None = None,
) -> int:
    """Append one event (in the caller's transaction) and return its id.

    ``actor`` is who acted (a user's email, ``cli:user@host``, a key prefix); ``action`` a dotted verb such as
    ``api_key.created``; ``target`` what it was done to (``api_key:key_… "Production"``).
    """
    serialise_on(conn, "audit-log-chain")
    values: dict[str, Any] = {
        "team_id": team_id,
        "occurred_at": now.astimezone(UTC),
        "actor": _clean(actor, 255) or "unknown",
        "actor_ip": _clean(ip, 45),
        "user_agent": _clean(user_agent, 255),
        "action": _clean(action, 64) or "unknown",
        "target": _clean(target, 255),
        "old_value": _encode(old),
        "new_value": _encode(new),
    }
    prev_hash = queries.last_row_hash(conn) or GENESIS_HASH
    values["prev_hash"] = prev_hash
    values["row_hash"] = _row_hash(prev_hash, values)
    return queries.insert_entry(conn, values)


def list_entries(
    conn: Connection,
    *,
    team_id: int | None,
    limit: int | None = 100,
    before_id: int | None = None,
    action_prefix: str | None = None,
    actor_contains: str | None = None,
    since: datetime | None = None,
) -> list[AuditEntry]:
    """A team's events (every team's for ``team_id=None``), newest first; ``before_id`` pages back."""
    rows = queries.entries(
        conn,
        team_id=team_id,
        limit=limit,
        before_id=before_id,
        action_prefix=action_prefix,
        actor_contains=actor_contains,
        since=since,
    )
    return [AuditEntry.from_row(row) for row in rows]


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """One entry as the command line's and the dashboard's JSON and CSV exports give it."""
    return {
        "id": entry.id,
        "team_id": entry.team_id,
        "occurred_at": entry.occurred_at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "actor": entry.actor,
        "actor_ip": entry.actor_ip,
        "user_agent": entry.user_agent,
        "action": entry.action,
        "target": entry.target,
        "old_value": entry.old_value,
        "new_value": entry.new_value,
    }


@dataclass(frozen=True, slots=True)
class ChainCheck:
    entries: int
    first_broken: int | None
    """The id of the first entry whose hash does not follow from its fields and its predecessor; None if intact."""


def check_chain(conn: Connection) -> ChainCheck:
    """Walk the whole log, oldest first, recomputing each entry's hash from its fields and its predecessor's."""
    prev_hash = GENESIS_HASH
    count = 0
    for row in queries.all_entries(conn):
        count += 1
        values = dict(row._mapping)
        if values["prev_hash"] != prev_hash or _row_hash(prev_hash, values) != values["row_hash"]:
            return ChainCheck(entries=count, first_broken=int(values["id"]))
        prev_hash = values["row_hash"]
    return ChainCheck(entries=count, first_broken=None)


def verify_chain(conn: Connection) -> int | None:
    """The id of the first entry whose hash does not follow from its fields and its predecessor; None if intact."""
    return check_chain(conn).first_broken
