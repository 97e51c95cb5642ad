"""Page-based pagination as Lettr does it: ``page`` (1-based) and ``per_page`` (1–100)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from postroom.core.ids import MAX_ROW_ID
from postroom.errors import ValidationFailed

MAX_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    per_page: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


def _integer(name: str, raw: str | None, default: int, maximum: int | None) -> tuple[int, list[str]]:
    if raw is None or raw == "":
        return default, []
    try:
        value = int(raw)
    except ValueError:
        return default, [f"The {name} parameter must be an integer."]
    if value < 1:
        return default, [f"The {name} parameter must be at least 1."]
    maximum = MAX_ROW_ID if maximum is None else maximum
    if value > maximum:
        return default, [f"The {name} parameter must not exceed {maximum}."]
    return value, []


def parse_page_params(page: str | None, per_page: str | None, *, default_per_page: int = 25) -> PageRequest:
    """Read ``page``/``per_page`` from the query string; 422 naming each bad parameter."""
    page_value, page_errors = _integer("page", page, 1, 1_000_000)
    per_page_value, per_page_errors = _integer("per_page", per_page, default_per_page, MAX_PER_PAGE)
    errors = {k: v for k, v in {"page": page_errors, "per_page": per_page_errors}.items() if v}
    if errors:
        raise ValidationFailed(errors)
    return PageRequest(page=page_value, per_page=per_page_value)


def pagination_body(total: int, request: PageRequest) -> dict[str, int]:
    """``{"total", "per_page", "current_page", "last_page"}`` with ``last_page = max(1, ceil(total/per_page))``."""
    return {
        "total": total,
        "per_page": request.per_page,
        "current_page": request.page,
        "last_page": max(1, math.ceil(total / request.per_page)),
    }
