"""Wire shapes of the system routes, for the OpenAPI document (postroom.core.openapi)."""

from __future__ import annotations

import msgspec

from postroom.core.openapi import Timestamp


class Health(msgspec.Struct):
    """``status`` is ``ok``; ``timestamp`` is the server's clock (``.000Z`` form)."""

    status: str
    timestamp: Timestamp


class ConfigWarning(msgspec.Struct):
    """Something in the configuration that is wrong but does not stop the server (``code``: ``mail_hostname``)."""

    code: str
    message: str


class DispatcherState(msgspec.Struct):
    """The dispatcher of a process that runs one (``postroom serve``): whether it reaches its database, when it last
    claimed work, how many work items are due and how long the oldest has waited (null when the database could not
    be asked)."""

    connected: bool
    last_claim_at: Timestamp | None
    backlog: int | None
    oldest_due_age_seconds: float | None


class Readiness(msgspec.Struct):
    """``status`` is ``ready``; ``warnings`` (empty when all is well) says what to fix even so; ``dispatcher`` only in
    a process that runs one."""

    status: str
    timestamp: Timestamp
    warnings: list[ConfigWarning]
    dispatcher: DispatcherState | None = None


class KeyCheck(msgspec.Struct):
    team_id: int
    timestamp: Timestamp
