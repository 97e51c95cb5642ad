"""Reading a JSON request body: one object, UTF-8, nested no deeper than ``MAX_JSON_DEPTH``.

Every JSON route of the API reads its body through ``decode_body``, so a deep or broken body is a 422 naming
``body`` on each of them, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from postroom.errors import ValidationFailed

log = logging.getLogger("postroom.api")

MAX_JSON_DEPTH = 32
"""Levels of arrays and objects in a request body (substitution data nests; nothing needs more)."""


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` deep (walked without recursion)."""
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, (dict, list))
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return False
    return True


def _refuse_body(message: str) -> ValidationFailed:
    log.info("request body refused: %s", message)
    return ValidationFailed({"body": [message]})


def decode_body(raw: bytes) -> dict[str, Any]:
    """The JSON object of a request body (an empty body is ``{}``); a 422 naming ``body`` otherwise, also for
    text that is not UTF-8 and for arrays and objects nested more than ``MAX_JSON_DEPTH`` deep (each refusal is
    one line in the log). Every JSON route reads its body through this."""
    try:
        body = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        raise _refuse_body("The request body must be a JSON object.") from None
    except UnicodeDecodeError:
        raise _refuse_body("The request body must be UTF-8 text.") from None
    except RecursionError:
        raise _refuse_body(f"The request body must not nest more than {MAX_JSON_DEPTH} levels deep.") from None
    if not isinstance(body, dict):
        raise _refuse_body("The request body must be a JSON object.")
    if _depth_over(body, MAX_JSON_DEPTH):
        raise _refuse_body(f"The request body must not nest more than {MAX_JSON_DEPTH} levels deep.")
    return body
