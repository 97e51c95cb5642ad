"""Wire shapes of the system routes, for the OpenAPI document (postroom.core.openapi)."""

from __future__ import annotations

import msgspec

from postroom.core.openapi import Timestamp


class Health(msgspec.Struct):
    """``status`` is ``ok``; ``timestamp`` is the server's clock (``.000Z`` form)."""

    status: str
    timestamp: Timestamp


class Readiness(msgspec.Struct):
    """``status`` is ``ready``."""

    status: str
    timestamp: Timestamp


class KeyCheck(msgspec.Struct):
    team_id: int
    timestamp: Timestamp
