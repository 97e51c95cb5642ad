"""Property-based fuzzing of every operation in the app's own OpenAPI document.

The schema is read from the live server (``/schema/openapi.json``, served by Litestar), so routes added later
are fuzzed without anyone listing them. Each operation gets ``POSTROOM_SCHEMATHESIS_EXAMPLES`` generated
requests (default 20) with a Full Access key and again with a Sending Only key, on both database engines.

The document describes each route's JSON request body and every status it answers with that status's body
(postroom.core.openapi and the packages' schemas.py), so the generated requests carry valid bodies.

Checks, per response, with both keys:
- never a server error (5xx);
- the status code is one the operation documents;
- the body matches that status's schema, and so do content type and headers;
- with the Sending Only key also: every operation outside ``emails:send`` (per ``ROUTE_SCOPES``) answers exactly
  the 403 ``insufficient_scope`` body, and the send operations never do.

Every operation is run even when one fails, and the failures are reported together with a reproduction.
Only positive examples are generated here; malformed bodies are fuzzed by test_hostile_input.py.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from postroom.auth.scopes import PUBLIC, ROUTE_SCOPES, Scope
from tests.security.conftest import SecurityTarget

EXAMPLES = int(os.environ.get("POSTROOM_SCHEMATHESIS_EXAMPLES", "20"))
INSUFFICIENT_SCOPE = {
    "message": "Your API key does not have the required permissions for this action.",
    "error_code": "insufficient_scope",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]


def _run_operation(operation: Any, base_url: str, key: str, verify: Any, seen: Counter[str]) -> str | None:
    """Fuzz one operation; None when every example passed, else the first failure with its reproduction.

    ``seen`` counts the statuses answered (printed with ``-s``), to show which outcomes the examples reached."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,  # the same examples on every run: a CI failure reproduces locally
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case: Any) -> None:
        response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        seen[f"{operation.label} {response.status_code}"] += 1
        try:
            verify(case, response)
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis reports several checks as a group
            raise AssertionError(f"{exc}\n  reproduce: {case.as_curl_command()}") from None

    try:
        fuzz()
    except Exception as exc:  # hypothesis re-raises the (shrunk) failing example
        return f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}"
    return None


def _schema(target: SecurityTarget) -> Any:
    return schemathesis.openapi.from_url(target.server.base_url + "/schema/openapi.json")


def _full_access_verifier(case: Any, response: Any) -> None:
    case.validate_response(response, checks=CHECKS)


def _sending_only_verifier(case: Any, response: Any) -> None:
    case.validate_response(response, checks=CHECKS)
    scope = ROUTE_SCOPES[(case.operation.method.upper(), case.operation.path)]
    if scope is PUBLIC:
        return
    if scope == Scope.EMAILS_SEND:
        assert response.status_code != 403, response.text[:300]
        return
    assert response.status_code == 403, f"{response.status_code}: {response.text[:300]}"
    assert response.json() == INSUFFICIENT_SCOPE


@pytest.mark.parametrize("permission", ["full", "sending"])
def test_no_operation_answers_a_server_error_or_breaks_its_schema(target: SecurityTarget, permission: str) -> None:
    schema = _schema(target)
    key = target.a.full_key if permission == "full" else target.a.sending_key
    verify = _full_access_verifier if permission == "full" else _sending_only_verifier
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, "the schema lost its routes"
    assert {(op.method.upper(), op.path) for op in operations} == set(ROUTE_SCOPES)  # every route is fuzzed
    seen: Counter[str] = Counter()
    failures = [f for op in operations if (f := _run_operation(op, target.server.base_url, key, verify, seen))]
    print("\n".join(f"  {label}: {count}" for label, count in sorted(seen.items())))
    print(f"\nschemathesis[{target.backend.name}, {permission}]: operations={len(operations)} examples={EXAMPLES} "
          f"failures={len(failures)}")  # fmt: skip
    assert not failures, "\n\n".join(failures)
