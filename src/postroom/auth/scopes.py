"""Scopes, permission levels, and the one table that says which scope every route needs.

A route that is not in ``ROUTE_SCOPES`` cannot be served: ``postroom.app`` refuses to start when a route and the
table disagree, and the guard denies any request whose route has no scope (deny by default).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Scope(StrEnum):
    EMAILS_SEND = "emails:send"
    EMAILS_READ = "emails:read"
    TEMPLATES_READ = "templates:read"
    TEMPLATES_WRITE = "templates:write"
    DOMAINS_READ = "domains:read"
    DOMAINS_WRITE = "domains:write"
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_WRITE = "webhooks:write"
    PROJECTS_READ = "projects:read"
    AUDIENCE_READ = "audience:read"
    AUDIENCE_WRITE = "audience:write"
    CAMPAIGNS_READ = "campaigns:read"
    CAMPAIGNS_WRITE = "campaigns:write"
    SMS_SEND = "sms:send"
    WHATSAPP_SEND = "whatsapp:send"
    # Lettr documents no scope for GET /auth/check; Sending Only keys are refused it.
    KEYS_READ = "keys:read"
    # Cancelling a scheduled send: not a send, so Sending Only keys lack it.
    EMAILS_CANCEL = "emails:cancel"
    # Postroom's own suppression-list endpoints.
    SUPPRESSIONS_READ = "suppressions:read"
    SUPPRESSIONS_WRITE = "suppressions:write"


class Permission(StrEnum):
    """The two levels a key can have, as the dashboard names them."""

    FULL = "full"
    SENDING = "sending"

    @property
    def label(self) -> str:
        return {"full": "Full Access", "sending": "Sending Only"}[self.value]


PERMISSION_SCOPES: Final[dict[Permission, frozenset[Scope]]] = {
    Permission.FULL: frozenset(Scope),
    Permission.SENDING: frozenset({Scope.EMAILS_SEND, Scope.SMS_SEND, Scope.WHATSAPP_SEND}),
}


SANDBOX_SCOPES: Final[frozenset[Scope]] = frozenset(
    {scope for scope in Scope if scope.value.endswith(":read")} | PERMISSION_SCOPES[Permission.SENDING]
)
"""What a sandbox key may do on top of its permission level: read, and send (into the local inbox). Every other
scope (every ``…:write`` scope, cancelling a scheduled send, any scope added later) changes something and is
refused to sandbox keys, so a route declared with a write scope in ``ROUTE_SCOPES`` refuses them with no code of
its own."""


def sandbox_permits(scope: Scope) -> bool:
    """Whether a sandbox key may use a route that needs ``scope``."""
    return scope in SANDBOX_SCOPES


class _Public:
    """Marker for routes that need no API key."""

    def __repr__(self) -> str:
        return "PUBLIC"


PUBLIC: Final = _Public()

RouteScope = Scope | _Public

ROUTE_SCOPES: Final[dict[tuple[str, str], RouteScope]] = {
    ("GET", "/api/health"): PUBLIC,
    ("GET", "/api/auth/check"): Scope.KEYS_READ,
    ("GET", "/api/projects"): Scope.PROJECTS_READ,
    ("POST", "/api/emails"): Scope.EMAILS_SEND,
    ("GET", "/api/emails"): Scope.EMAILS_READ,
    ("GET", "/api/emails/events"): Scope.EMAILS_READ,
    ("GET", "/api/emails/{request_id}"): Scope.EMAILS_READ,
    ("POST", "/api/emails/scheduled"): Scope.EMAILS_SEND,
    ("GET", "/api/emails/scheduled"): Scope.EMAILS_READ,
    ("GET", "/api/emails/scheduled/{request_id}"): Scope.EMAILS_READ,
    ("DELETE", "/api/emails/scheduled/{request_id}"): Scope.EMAILS_CANCEL,
    ("GET", "/api/suppressions"): Scope.SUPPRESSIONS_READ,
    ("DELETE", "/api/suppressions/{email}"): Scope.SUPPRESSIONS_WRITE,
    # domains
    ("GET", "/api/domains"): Scope.DOMAINS_READ,
    ("POST", "/api/domains"): Scope.DOMAINS_WRITE,
    ("GET", "/api/domains/{domain}"): Scope.DOMAINS_READ,
    ("DELETE", "/api/domains/{domain}"): Scope.DOMAINS_WRITE,
    ("POST", "/api/domains/{domain}/verify"): Scope.DOMAINS_WRITE,
    ("POST", "/api/domains/{domain}/dkim/rotate"): Scope.DOMAINS_WRITE,
    ("PUT", "/api/domains/{domain}/tracking-domain"): Scope.DOMAINS_WRITE,
    # templates and folders
    ("GET", "/api/templates"): Scope.TEMPLATES_READ,
    ("POST", "/api/templates"): Scope.TEMPLATES_WRITE,
    ("GET", "/api/templates/html"): Scope.TEMPLATES_READ,
    ("GET", "/api/templates/{slug}"): Scope.TEMPLATES_READ,
    ("PUT", "/api/templates/{slug}"): Scope.TEMPLATES_WRITE,
    ("DELETE", "/api/templates/{slug}"): Scope.TEMPLATES_WRITE,
    ("GET", "/api/templates/{slug}/merge-tags"): Scope.TEMPLATES_READ,
    ("GET", "/api/folders"): Scope.TEMPLATES_READ,
    # webhooks
    ("GET", "/api/webhooks"): Scope.WEBHOOKS_READ,
    ("POST", "/api/webhooks"): Scope.WEBHOOKS_WRITE,
    ("GET", "/api/webhooks/{webhook_id}"): Scope.WEBHOOKS_READ,
    ("PUT", "/api/webhooks/{webhook_id}"): Scope.WEBHOOKS_WRITE,
    ("PATCH", "/api/webhooks/{webhook_id}"): Scope.WEBHOOKS_WRITE,
    ("DELETE", "/api/webhooks/{webhook_id}"): Scope.WEBHOOKS_WRITE,
    ("POST", "/api/webhooks/{webhook_id}/rotate-secret"): Scope.WEBHOOKS_WRITE,
    ("DELETE", "/api/webhooks/{webhook_id}/previous-secret"): Scope.WEBHOOKS_WRITE,
    ("GET", "/api/webhooks/{webhook_id}/deliveries"): Scope.WEBHOOKS_READ,
    ("POST", "/api/webhooks/{webhook_id}/deliveries/{delivery_id}/replay"): Scope.WEBHOOKS_WRITE,
    # audience
    ("GET", "/api/audience/lists"): Scope.AUDIENCE_READ,
    ("POST", "/api/audience/lists"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/lists/bulk"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/lists/{list_id}"): Scope.AUDIENCE_READ,
    ("PATCH", "/api/audience/lists/{list_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/lists/{list_id}"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/contacts"): Scope.AUDIENCE_READ,
    ("POST", "/api/audience/contacts"): Scope.AUDIENCE_WRITE,
    ("POST", "/api/audience/contacts/bulk"): Scope.AUDIENCE_WRITE,
    ("POST", "/api/audience/contacts/lists/bulk"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/contacts/lists/bulk"): Scope.AUDIENCE_WRITE,
    ("POST", "/api/audience/contacts/topics/bulk"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/contacts/topics/bulk"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/contacts/{contact_id}"): Scope.AUDIENCE_READ,
    ("PATCH", "/api/audience/contacts/{contact_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/contacts/{contact_id}"): Scope.AUDIENCE_WRITE,
    ("POST", "/api/audience/contacts/{contact_id}/lists/{list_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/contacts/{contact_id}/lists/{list_id}"): Scope.AUDIENCE_WRITE,
    ("POST", "/api/audience/contacts/{contact_id}/topics/{topic_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/contacts/{contact_id}/topics/{topic_id}"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/topics"): Scope.AUDIENCE_READ,
    ("POST", "/api/audience/topics"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/topics/{topic_id}"): Scope.AUDIENCE_READ,
    ("PATCH", "/api/audience/topics/{topic_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/topics/{topic_id}"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/properties"): Scope.AUDIENCE_READ,
    ("POST", "/api/audience/properties"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/properties/{property_id}"): Scope.AUDIENCE_READ,
    ("PATCH", "/api/audience/properties/{property_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/properties/{property_id}"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/segments"): Scope.AUDIENCE_READ,
    ("POST", "/api/audience/segments"): Scope.AUDIENCE_WRITE,
    ("GET", "/api/audience/segments/{segment_id}"): Scope.AUDIENCE_READ,
    ("PATCH", "/api/audience/segments/{segment_id}"): Scope.AUDIENCE_WRITE,
    ("DELETE", "/api/audience/segments/{segment_id}"): Scope.AUDIENCE_WRITE,
    # readiness for load balancers
    ("GET", "/api/health/ready"): PUBLIC,
}
"""(method, path template) → the scope the route needs, or PUBLIC. The only place scopes are assigned."""


def permits(permission: str, scope: Scope) -> bool:
    """Whether a key with ``permission`` holds ``scope``; an unknown permission holds nothing."""
    try:
        return scope in PERMISSION_SCOPES[Permission(permission)]
    except ValueError:
        return False
