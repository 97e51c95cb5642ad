"""Domains: the team's sending domains, the DNS records to publish for each, adding one, and the verify button.

The domains package is being extended alongside this page, so the page uses only what it finds there: the list
and ``add_domain`` always; the full record table (``expected_records``) and the live DNS check
(``postroom.domains.tasks.DomainChecks``) when they exist, falling back to the DKIM record alone otherwise.
"""

from __future__ import annotations

import inspect
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath

from postroom.core.clock import utcnow
from postroom.dashboard.routes.common import db_of, settings_of
from postroom.dashboard.web import PageRefused, actor, form_data, redirect, render, signed_in
from postroom.domains import service as domains_service
from postroom.errors import ValidationFailed


def _records(domain: Any, request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
    expected = getattr(domains_service, "expected_records", None)
    if expected is not None:
        return list(expected(domain, settings_of(request)))
    return [
        {
            "purpose": "dkim",
            "type": "TXT",
            "name": domain.dkim_record_name,
            "value": domain.dkim_public_key,
            "status": None,
        }
    ]


def _checker(request: Request[Any, Any, Any]) -> Any:
    """The application's domain checker (shared with ``/api/domains``), or None where verification is not built."""
    try:
        from postroom.domains.tasks import DomainChecks
    except ImportError:
        return None
    state = request.app.state
    checks = state.get("domain_checks")
    if checks is None:
        checks = DomainChecks(state.db, state.settings)
        state.domain_checks = checks
    return checks


async def _page(
    request: Request[Any, Any, Any], *, status: int = 200, errors: dict[str, list[str]] | None = None, value: str = ""
) -> Response[Any]:
    session = signed_in(request)
    domains = await db_of(request).read(lambda conn: domains_service.list_domains(conn, team_id=session.team_id))
    rows = [{"domain": d, "records": _records(d, request)} for d in domains]
    return render(
        request,
        "domains.html",
        status=status,
        rows=rows,
        errors=errors or {},
        value=value,
        can_verify=_checker(request) is not None,
    )


@get("/domains", include_in_schema=False)
async def list_domains(request: Request[Any, Any, Any]) -> Response[Any]:
    return await _page(request)


@post("/domains", include_in_schema=False)
async def add_domain(request: Request[Any, Any, Any]) -> Response[Any]:
    session = signed_in(request)
    form = await form_data(request)
    name = form.get("domain", "")[:255]
    who = actor(request)
    now = utcnow()
    extra: dict[str, Any] = {}
    if "settings" in inspect.signature(domains_service.add_domain).parameters:
        extra["settings"] = settings_of(request)

    def add(conn: Any) -> None:
        domains_service.add_domain(conn, team_id=session.team_id, name=name, approve=False, actor=who, now=now, **extra)

    try:
        await db_of(request).write(add)
    except ValidationFailed as exc:
        return await _page(request, status=422, errors=exc.errors, value=name)
    return redirect(request, "/domains", notice="domain-added")


@post("/domains/{name:str}/verify", include_in_schema=False)
async def verify_domain(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[Any]:
    session = signed_in(request)
    checker = _checker(request)
    if checker is None:
        raise PageRefused("Domain verification is not available in this version.", status=501)
    domain_name = domains_service.normalise_domain(name)
    await checker.verify(team_id=session.team_id, name=domain_name, actor=actor(request))
    return redirect(request, "/domains", notice="domain-checked")


HANDLERS = [list_domains, add_domain, verify_domain]
