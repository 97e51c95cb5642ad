"""Types that document the ``/api`` routes in the OpenAPI document (``/schema/openapi.json``), and nothing else.

The handlers read their bodies themselves (``request.body()`` plus our own validation, so every problem is a 422
naming its field) and answer plain dicts, so Litestar cannot see what they accept or answer. These Structs and
helpers tell it, without touching what runs: ``responses=`` on a route decorator replaces the generated response
entries, and ``operation_class=`` adds the request body to the operation. The schemathesis suite
(tests/security/test_schemathesis.py) checks the live answers against them, so a shape that drifts fails CI.

Fields a body sometimes leaves out are typed ``T | UnsetType`` (documented, not required); ``T | None`` means the
key is always there and may be null.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final, cast

import msgspec
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from msgspec import UNSET, Struct, UnsetType

from postroom.core.ids import MAX_ROW_ID


class ErrorBody(Struct):
    """The Lettr error body: 400, 404, 409, 413 and 429."""

    message: str
    error_code: str


class UnauthorizedBody(Struct):
    """401 carries no ``error_code``."""

    message: str


class ForbiddenBody(Struct, kw_only=True):
    """403: ``insufficient_scope`` for a missing scope; no ``error_code`` for an address outside the allowlist."""

    message: str
    error_code: str | UnsetType = UNSET


class ValidationErrorBody(Struct):
    """422 ``validation_error``; ``errors`` maps each field (dotted path or header name) to its messages."""

    message: str
    error_code: str
    errors: dict[str, list[str]]


class MessageBody(Struct):
    """A success body without ``data`` (the deletes Lettr answers ``{"message"}``)."""

    message: str


class Pagination(Struct):
    """Laravel-style page pagination: ``last_page = max(1, ceil(total / per_page))``."""

    total: int
    per_page: int
    current_page: int
    last_page: int


Timestamp = str
"""An ISO-8601 string (resources ``+00:00``, events and health ``.000Z``); the SDKs never parse them."""

RowId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ROW_ID)]
"""An integer id in a request body (``project_id``, ``folder_id``, ``template_version``): the validators refuse
anything outside 1 … 2³¹−1 with a 422 naming the field (the columns are 32-bit on PostgreSQL)."""

_ERRORS: Final[dict[int, tuple[type[Struct], str]]] = {
    400: (ErrorBody, "The request cannot be served as sent (e.g. the sender domain cannot send)."),
    401: (UnauthorizedBody, "No API key, or an unknown, revoked or expired one."),
    403: (ForbiddenBody, "The key lacks the route's scope, or the caller's address is not allowed."),
    404: (ErrorBody, "Not found (or owned by another team)."),
    409: (ErrorBody, "Conflicts with the resource's current state."),
    413: (ErrorBody, "The request body is too large."),
    422: (ValidationErrorBody, "Invalid input; `errors` names each field."),
    429: (ErrorBody, "Too many requests (rate limit or repeated authentication failures); see Retry-After."),
    502: (ErrorBody, "The email could not be queued for delivery (`transmission_failed`)."),
    503: (ErrorBody, "The database is unreachable or out of connections; nothing was done. See Retry-After."),
}

AUTHENTICATED: Final = (400, 401, 403, 429, 503)
"""What every route behind an API key can answer besides its own errors."""

_envelopes: dict[Any, type[Struct]] = {}


def envelope_of(data: Any, name: str) -> type[Struct]:
    """The success envelope ``{"message": str, "data": <data>}`` as a Struct named ``name`` (one per name)."""
    if name not in _envelopes:
        _envelopes[name] = msgspec.defstruct(name, [("message", str), ("data", data)])
    return _envelopes[name]


def documented(
    status: int,
    body: Any,
    *,
    errors: Iterable[int] = (),
    description: str = "Success.",
    public: bool = False,
) -> dict[int, ResponseSpec]:
    """``responses=`` for a route: the success body (``None`` for no content), then each error status's body.

    Authenticated routes also document 400, 401, 403 and 429; a documented status replaces Litestar's generated
    entry (whose 400 body is not what our error handler answers).
    """
    specs = {status: ResponseSpec(data_container=body, description=description, generate_examples=False)}
    for code in sorted({*errors, *(() if public else AUTHENTICATED)}):
        container, text = _ERRORS[code]
        specs[code] = ResponseSpec(data_container=container, description=text, generate_examples=False)
    return specs


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """``schema`` with every ``#/$defs/…`` reference replaced by its definition (request bodies are not
    recursive), so it can sit inside an operation without registering components."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(definitions[ref.removeprefix("#/$defs/")], definitions)
        return {key: _inline(value, definitions) for key, value in schema.items() if key != "$defs"}
    if isinstance(schema, list):
        return [_inline(item, definitions) for item in schema]
    return schema


def request_body(
    body: type[Struct],
    *,
    required: bool = True,
    rules: dict[str, Any] | None = None,
    description: str | None = None,
) -> type[Operation]:
    """An ``operation_class`` that documents ``body`` as the operation's JSON request body; ``rules`` adds JSON
    Schema keywords the Struct cannot say (fields required together or in the alternative).

    The handler still reads and validates the raw body itself; this only describes what that validation accepts.
    """
    generated = msgspec.json.schema(body)
    schema = cast(Schema, {**_inline(generated, generated.get("$defs", {})), **(rules or {})})

    @dataclass
    class OperationWithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=schema)},
                required=required,
                description=description or body.__doc__,
            )

    return OperationWithBody


__all__ = [
    "AUTHENTICATED",
    "UNSET",
    "ErrorBody",
    "ForbiddenBody",
    "MessageBody",
    "Pagination",
    "RowId",
    "Timestamp",
    "UnauthorizedBody",
    "UnsetType",
    "ValidationErrorBody",
    "documented",
    "envelope_of",
    "request_body",
]
