"""The Lettr success envelope: ``{"message": "<human text>", "data": <payload>}``."""

from __future__ import annotations

from typing import Any


def envelope(message: str, data: Any) -> dict[str, Any]:
    return {"message": message, "data": data}
