"""``GET /api/health`` (public) and ``GET /api/auth/check``."""

from __future__ import annotations

from typing import Any

from litestar import get

from postroom.auth.guard import CallerKey
from postroom.core.clock import iso_event, utcnow
from postroom.core.envelope import envelope


@get("/health", sync_to_thread=False)
def health() -> dict[str, Any]:
    """Public: answers without a key and ignores any ``Authorization`` header sent anyway."""
    return envelope("Health check passed.", {"status": "ok", "timestamp": iso_event(utcnow())})


@get("/auth/check", sync_to_thread=False)
def auth_check(api_key: CallerKey) -> dict[str, Any]:
    return envelope("API key is valid.", {"team_id": api_key.team_id, "timestamp": iso_event(utcnow())})
