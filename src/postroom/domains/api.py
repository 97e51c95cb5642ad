"""``/api/domains``: register sending domains, see the records to publish, verify them.

``POST /api/domains/{domain}/dkim/rotate`` is a Postroom addition: it starts a DKIM key rotation.
``PUT /api/domains/{domain}/tracking-domain`` is one too: it sets (or, with null, removes) the domain's tracking
domain, whose CNAME is then listed and verified with the other records.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.params import FromPath

from postroom.apikeys.guard import CallerKey, caller_actor
from postroom.core.clock import utcnow
from postroom.core.envelope import envelope
from postroom.core.jsonbody import decode_body
from postroom.core.openapi import documented, envelope_of, request_body
from postroom.domains import schemas, service
from postroom.domains.tasks import DomainChecks
from postroom.errors import ValidationFailed


def _checks(state: State) -> DomainChecks:
    """One checker (and DNS resolver) per application."""
    checks: DomainChecks | None = state.get("domain_checks")
    if checks is None:
        checks = DomainChecks(state.db, state.settings)
        state.domain_checks = checks
    return checks


@get("/domains", responses=documented(200, envelope_of(schemas.DomainList, "DomainListResponse")))
async def list_domains(state: State, api_key: CallerKey) -> dict[str, Any]:
    domains = await state.db.read(lambda conn: service.list_domains(conn, team_id=api_key.team_id))
    return envelope("Domains retrieved successfully.", {"domains": [schemas.list_item_body(d) for d in domains]})


@post(
    "/domains",
    status_code=201,
    responses=documented(201, envelope_of(schemas.CreatedDomain, "CreatedDomainResponse"), errors=(409, 413, 422)),
    operation_class=request_body(schemas.CreateDomainInput),
)
async def create_domain(request: Request[Any, Any, State], state: State, api_key: CallerKey) -> dict[str, Any]:
    body = decode_body(await request.body())
    name = body.get("domain")
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed({"domain": ["The domain field is required."]})
    if len(name) > 255:
        raise ValidationFailed({"domain": ["The domain must not be greater than 255 characters."]})
    who = caller_actor(request, api_key)
    domain = await state.db.write(
        lambda conn: service.add_domain(
            conn, team_id=api_key.team_id, name=name, approve=False, actor=who, now=utcnow(), settings=state.settings
        )
    )
    return envelope("Domain created successfully.", schemas.created_body(domain))


@get(
    "/domains/{domain:str}",
    responses=documented(200, envelope_of(schemas.DomainDetail, "DomainDetailResponse"), errors=(404, 422)),
)
async def get_domain(state: State, api_key: CallerKey, domain: FromPath[str]) -> dict[str, Any]:
    name = service.normalise_domain(domain)
    found = await state.db.read(lambda conn: service.get_domain(conn, team_id=api_key.team_id, name=name))
    return envelope("Domain retrieved successfully.", schemas.detail_body(found, state.settings))


@delete(
    "/domains/{domain:str}",
    status_code=204,
    responses=documented(204, None, errors=(404, 422), description="Deleted; no content."),
)
async def delete_domain(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, domain: FromPath[str]
) -> Response[None]:
    name = service.normalise_domain(domain)
    who = caller_actor(request, api_key)
    await state.db.write(
        lambda conn: service.delete_domain(conn, team_id=api_key.team_id, name=name, actor=who, now=utcnow())
    )
    return Response(content=None, status_code=204)


@post(
    "/domains/{domain:str}/verify",
    status_code=200,
    responses=documented(200, envelope_of(schemas.DomainVerification, "DomainVerificationResponse"), errors=(404, 422)),
)
async def verify_domain(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, domain: FromPath[str]
) -> dict[str, Any]:
    name = service.normalise_domain(domain)
    who = caller_actor(request, api_key)
    checked, result = await _checks(state).verify(team_id=api_key.team_id, name=name, actor=who)
    return envelope("Domain verification completed.", schemas.verification_body(checked, result))


@post(
    "/domains/{domain:str}/dkim/rotate",
    status_code=200,
    responses=documented(200, envelope_of(schemas.DomainDetail, "DomainDetailResponse"), errors=(404, 409, 422)),
)
async def rotate_dkim(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, domain: FromPath[str]
) -> dict[str, Any]:
    name = service.normalise_domain(domain)
    who = caller_actor(request, api_key)
    rotated = await state.db.write(
        lambda conn: service.start_rotation(
            conn, team_id=api_key.team_id, name=name, actor=who, now=utcnow(), settings=state.settings
        )
    )
    return envelope("DKIM key rotation started.", schemas.detail_body(rotated, state.settings))


@put(
    "/domains/{domain:str}/tracking-domain",
    status_code=200,
    responses=documented(200, envelope_of(schemas.DomainDetail, "DomainDetailResponse"), errors=(404, 413, 422)),
    operation_class=request_body(schemas.TrackingDomainInput),
)
async def set_tracking_domain(
    request: Request[Any, Any, State], state: State, api_key: CallerKey, domain: FromPath[str]
) -> dict[str, Any]:
    name = service.normalise_domain(domain)
    body = decode_body(await request.body())  # a body that is not JSON is a 422 before any lookup
    # Another team's domain is a 404 whatever fields the body holds.
    await state.db.read(lambda conn: service.get_domain(conn, team_id=api_key.team_id, name=name))
    if "tracking_domain" not in body:
        raise ValidationFailed({"tracking_domain": ["The tracking_domain field is required (null removes it)."]})
    host = body["tracking_domain"]
    if host is not None and not isinstance(host, str):
        raise ValidationFailed({"tracking_domain": ["The tracking domain must be a string or null."]})
    who = caller_actor(request, api_key)
    now = utcnow()

    def change(conn: Any) -> service.SendingDomain:
        return service.set_tracking_domain(
            conn, team_id=api_key.team_id, name=name, tracking_domain=host, actor=who, now=now
        )

    changed = await state.db.write(change)
    return envelope("Tracking domain updated.", schemas.detail_body(changed, state.settings))


HANDLERS: list[Any] = [
    list_domains,
    create_domain,
    get_domain,
    delete_domain,
    verify_domain,
    rotate_dkim,
    set_tracking_domain,
]
