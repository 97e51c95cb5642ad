"""The official ``lettr`` SDK, unchanged, against a live Postroom: health, auth check, projects."""

from __future__ import annotations

import pytest
from lettr import Lettr
from lettr._exceptions import AuthenticationError, ValidationError

from tests.conftest import Backend, Server, bearer, http_from


def test_health_needs_no_key_and_ignores_a_bad_one(server: Server) -> None:
    health = Lettr("lttr_not-a-real-key", base_url=server.api_url).health()
    assert health.status == "ok"
    assert health.timestamp.endswith("Z")
    with http_from() as http:
        response = http.get(server.api_url + "/health", headers=bearer("garbage"))
    assert response.status_code == 200
    assert response.json()["message"] == "Health check passed."


def test_auth_check_returns_the_keys_team(server: Server, backend: Backend) -> None:
    created = backend.create_key()
    check = Lettr(created.key, base_url=server.api_url).auth_check()
    assert check.team_id == backend.team_id
    assert isinstance(check.team_id, int)


def test_projects_list_shows_the_default_project(server: Server, backend: Backend) -> None:
    created = backend.create_key()
    listing = Lettr(created.key, base_url=server.api_url).projects.list()
    assert [p.name for p in listing.projects] == ["Default project"]
    assert listing.projects[0].team_id == backend.team_id
    assert listing.total == 1
    assert listing.last_page == 1
    assert listing.per_page == 25


def test_projects_pagination_parameters_are_validated(server: Server, backend: Backend) -> None:
    client = Lettr(backend.create_key().key, base_url=server.api_url)
    with pytest.raises(ValidationError) as excinfo:
        client.projects.list(per_page=101)
    assert excinfo.value.errors == {"per_page": ["The per_page parameter must not exceed 100."]}
    with http_from() as http:
        response = http.get(
            server.api_url + "/projects", params={"per_page": "x"}, headers=bearer(backend.create_key().key)
        )
    assert response.status_code == 422
    assert response.json() == {
        "message": "Validation failed.",
        "error_code": "validation_error",
        "errors": {"per_page": ["The per_page parameter must be an integer."]},
    }


def test_unknown_route_is_a_json_404_before_any_authentication(server: Server) -> None:
    with http_from() as http:
        response = http.get(server.api_url + "/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"message": "Not found.", "error_code": "not_found"}


def test_a_revoked_key_raises_authentication_error_in_the_sdk(server: Server, backend: Backend) -> None:
    from postroom.apikeys import service
    from postroom.audit.service import Actor
    from postroom.core.clock import utcnow

    created = backend.create_key()
    backend.write(
        lambda conn: service.revoke_key(
            conn, key_id=created.record.id, team_id=None, actor=Actor(name="tests"), now=utcnow()
        )
    )
    with pytest.raises(AuthenticationError) as excinfo:
        Lettr(created.key, base_url=server.api_url).auth_check()
    assert str(excinfo.value) == "Invalid API key."
