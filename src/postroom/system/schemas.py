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


class Readiness(msgspec.Struct):
    """``status`` is ``ready``; ``warnings`` (empty when all is well) says what to fix even so."""

    status: str
    timestamp: Timestamp
    warnings: list[ConfigWarning]


class KeyCheck(msgspec.Struct):
    team_id: int
    timestamp: Timestamp
