"""``/api/webhooks``: manage endpoints, plus Postroom's secret rotation, delivery log and replay.

Lettr's five routes keep Lettr's shapes. Postroom adds, under the same ``webhooks:read``/``webhooks:write`` scopes:

- ``POST /webhooks/{id}/rotate-secret`` (``{"overlap_hours": 24, "force": false}``): a new ``signing_secret``,
  shown once; the old one keeps signing for the overlap;
- ``DELETE /webhooks/{id}/previous-secret``: end the overlap now;
- ``GET /webhooks/{id}/deliveries`` (``page``, ``per_page``): batches newest first, each with its attempt log;
- ``POST /webhooks/{id}/deliveries/{delivery_id}/replay``: send a batch once more, now (202).

A URL (and an OAuth2 token URL) is resolved and checked against the SSRF rules before it is stored; it is checked
again at every delivery, because DNS changes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from litestar import Request, Response, delete, get, post, route
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from postroom.apikeys.guard import CallerKey, caller_actor
from postroom.config import Settings
from postroom.core.clock import utcnow
from postroom.core.envelope import envelope
from postroom.core.jsonbody import decode_body
from postroom.core.openapi import MessageBody, documented, envelope_of, request_body
from postroom.core.pagination import pagination_body, parse_page_params
from postroom.errors import ValidationFailed
from postroom.webhooks import schemas, service, ssrf
from postroom.webhooks.schemas import delivery_body, webhook_body


async def _check_destination(settings: Settings, field: str, target: ssrf.Target | None) -> None:
    """422 naming ``field`` when the URL's host resolves to an address webhooks may not reach."""
    if target is None:
        return
    resolver = ssrf.HostResolver(settings.dns_server)
    try:
        await ssrf.resolve(target, resolver=resolver, allow_private=settings.webhook_allow_private)
    except ssrf.DestinationRefused as refused:
        raise ValidationFailed({field: [refused.message]}) from None


async def _check_token_url(settings: Settings, body: dict[str, Any]) -> None:
    token_url = body.get("oauth_token_url")
    if isinstance(token_url, str) and token_url.strip():
        await _check_destination(settings, "oauth_token_url", ssrf.parse_target(token_url))


@get("/webhooks", responses=documented(200, envelope_of(schemas.WebhookList, "WebhookListResponse")))
async def list_webhooks(state: State, api_key: CallerKey) -> dict[str, Any]:
    rows = await state.db.read(lambda conn: service.list_webhooks(conn, team_id=api_key.team_id))
    return envelope("Webhooks retrieved successfully.", {"webhooks": [webhook_body(r) for r in rows]})


@post(
    "/webhooks",
    status_code=201,
    responses=documented(
        201, envelope_of(schemas.WebhookWithSecret, "WebhookWithSecretResponse"), errors=(409, 413, 422)
    ),
    operation_class=request_body(schemas.CreateWebhookInput),
)
async def create_webhook(request: Request[Any, Any, State], state: State, api_key: CallerKey) -> dict[str, Any]:
    body = decode_body(await request.body())
    data = schemas.parse_create(body)
    settings: Settings = state.settings
    await _check_destination(settings, "url", data.target)
    await _check_token_url(settings, body)
    who = caller_actor(request, api_key)
    row, secret = await state.db.write(
        lambda conn: service.create_webhook(
            conn, team_id=api_key.team_id, data=data, server_secret=settings.server_secret, actor=who, now=utcnow()
        )
    )
    return envelope("Webhook created successfully.", {**webhook_body(row), "signing_secret": secret})


@get(
    "/webhooks/{webhook_id:str}",
    responses=documented(200, envelope_of(schemas.Webhook, "WebhookResponse"), errors=(404,)),
)
async def get_webhook(state: State, api_key: CallerKey, webhook_id: FromPath[str]) -> dict[str, Any]:
    row = await state.db.read(lambda conn: service.get_webhook(conn, team_id=api_key.team_id, webhook_id=webhook_id))
    return envelope("Webhook retrieved successfully.", webhook_body(row))


@route(
    "/webhooks/{webhook_id:str}",
    http_method=["PUT", "PATCH"],
    status_code=200,
    responses=documented(200, envelope_of(schemas.Webhook, "WebhookResponse"), errors=(404, 409, 413, 422)),
    operation_class=request_body(schemas.UpdateWebhookInput),
)
async def update_webhook(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, webhook_id: FromPath[str]
) -> dict[str, Any]:
    """A partial update, by PUT (the SDK) or PATCH (the docs); ``target`` is accepted for ``url``."""
    body = decode_body(await request.body())
    changes = schemas.parse_update(body)
    settings: Settings = state.settings
    await _check_destination(settings, "url", changes.target)
    await _check_token_url(settings, body)
    who = caller_actor(request, api_key)
    row = await state.db.write(
        lambda conn: service.update_webhook(
            conn,
            team_id=api_key.team_id,
            webhook_id=webhook_id,
            changes=changes,
            server_secret=settings.server_secret,
            actor=who,
            now=utcnow(),
        )
    )
    return envelope("Webhook updated successfully.", webhook_body(row))


@delete("/webhooks/{webhook_id:str}", status_code=200, responses=documented(200, MessageBody, errors=(404,)))
async def delete_webhook(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, webhook_id: FromPath[str]
) -> dict[str, Any]:
    who = caller_actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_webhook(
            conn, team_id=api_key.team_id, webhook_id=webhook_id, actor=who, now=utcnow()
        )
    )
    return {"message": "Webhook deleted successfully."}


@post(
    "/webhooks/{webhook_id:str}/rotate-secret",
    status_code=200,
    responses=documented(
        200, envelope_of(schemas.WebhookWithSecret, "WebhookWithSecretResponse"), errors=(404, 409, 413, 422)
    ),
    operation_class=request_body(schemas.RotateSecretInput, required=False),
)
async def rotate_secret(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, webhook_id: FromPath[str]
) -> dict[str, Any]:
    rotation = schemas.parse_rotation(decode_body(await request.body()))
    settings: Settings = state.settings
    who = caller_actor(request, api_key)
    row, secret = await state.db.write(
        lambda conn: service.rotate_secret(
            conn,
            team_id=api_key.team_id,
            webhook_id=webhook_id,
            overlap=timedelta(hours=rotation.overlap_hours),
            force=rotation.force,
            server_secret=settings.server_secret,
            actor=who,
            now=utcnow(),
        )
    )
    return envelope("Signing secret rotated.", {**webhook_body(row), "signing_secret": secret})


@delete(
    "/webhooks/{webhook_id:str}/previous-secret",
    status_code=200,
    responses=documented(200, envelope_of(schemas.Webhook, "WebhookResponse"), errors=(404,)),
)
async def expire_previous_secret(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, webhook_id: FromPath[str]
) -> dict[str, Any]:
    who = caller_actor(request, api_key)
    row = await state.db.write(
        lambda conn: service.expire_previous_secret(
            conn, team_id=api_key.team_id, webhook_id=webhook_id, actor=who, now=utcnow()
        )
    )
    return envelope("The previous signing secret no longer signs.", webhook_body(row))


@get(
    "/webhooks/{webhook_id:str}/deliveries",
    responses=documented(200, envelope_of(schemas.DeliveryList, "DeliveryListResponse"), errors=(404, 422)),
)
async def list_deliveries(
    state: State,
    api_key: CallerKey,
    webhook_id: FromPath[str],
    page: FromQuery[str | None] = None,
    per_page: FromQuery[str | None] = None,
) -> dict[str, Any]:
    request = parse_page_params(page, per_page)
    batches, attempts, total = await state.db.read(
        lambda conn: service.list_deliveries(
            conn, team_id=api_key.team_id, webhook_id=webhook_id, offset=request.offset, limit=request.per_page
        )
    )
    return envelope(
        "Webhook deliveries retrieved successfully.",
        {
            "deliveries": [delivery_body(b, attempts[b.id]) for b in batches],
            "pagination": pagination_body(total, request),
        },
    )


@post(
    "/webhooks/{webhook_id:str}/deliveries/{delivery_id:str}/replay",
    status_code=202,
    responses=documented(202, envelope_of(schemas.Delivery, "DeliveryResponse"), errors=(404, 409)),
)
async def replay_delivery(
    request: Request[Any, Any, State],
    state: State,
    api_key: CallerKey,
    webhook_id: FromPath[str],
    delivery_id: FromPath[str],
) -> Response[dict[str, Any]]:
    who = caller_actor(request, api_key)
    batch = await state.db.write(
        lambda conn: service.replay_delivery(
            conn, team_id=api_key.team_id, webhook_id=webhook_id, delivery_id=delivery_id, actor=who, now=utcnow()
        )
    )
    state.wake_worker()
    return Response(envelope("Webhook delivery queued for replay.", delivery_body(batch)), status_code=202)


HANDLERS: list[Any] = [
    list_webhooks,
    create_webhook,
    get_webhook,
    update_webhook,
    delete_webhook,
    rotate_secret,
    expire_previous_secret,
    list_deliveries,
    replay_delivery,
]
