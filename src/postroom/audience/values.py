"""Property values, typed: what each of the five property types accepts, and the one string it is stored as.

Contacts hold property values as strings (the Lettr wire shape). A ``number`` is stored as the decimal text it
was given, a ``boolean`` as ``true``/``false``, a ``date`` as ISO-8601 (``2026-12-02`` or a full timestamp; it
compares by calendar day), ``json`` as JSON text. Numbers and booleans may also arrive as JSON numbers and booleans.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Final

import msgspec

from postroom.audience.schemas import MAX_PROPERTY_VALUE

PROPERTY_TYPES: Final = ("string", "number", "boolean", "date", "json")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class InvalidValue(ValueError):
    """The value does not fit its property's type; the message says how."""


def is_date(text: str) -> bool:
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            parse(text)
        except ValueError:
            continue
        return True
    return False


def property_value(kind: str, value: Any) -> str:
    """``value`` as the string stored for a property of type ``kind``; ``InvalidValue`` if it does not fit."""
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        text = repr(value)
    elif kind == "boolean" and isinstance(value, bool):
        text = "true" if value else "false"
    elif kind == "json" and not isinstance(value, str):
        text = msgspec.json.encode(value).decode()
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidValue(f"must be a string holding a {kind} value")
    if len(text) > MAX_PROPERTY_VALUE:
        raise InvalidValue(f"must not be longer than {MAX_PROPERTY_VALUE} characters")
    if kind == "number" and not _NUMBER.fullmatch(text):
        raise InvalidValue("must be a number")
    if kind == "boolean" and text not in ("true", "false"):
        raise InvalidValue("must be true or false")
    if kind == "date" and not is_date(text):
        raise InvalidValue("must be an ISO-8601 date (2026-12-02) or date-time")
    if kind == "json":
        try:
            msgspec.json.decode(text)
        except msgspec.DecodeError:
            raise InvalidValue("must be valid JSON") from None
    return text


def is_number(text: str) -> bool:
    return _NUMBER.fullmatch(text) is not None
