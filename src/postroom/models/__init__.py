"""Every table, one module per concept; importing this package registers them all on ``metadata``."""

from postroom.models.api_key import api_keys
from postroom.models.auth_failure import auth_blocks, auth_failures
from postroom.models.sending import (
    domain_events,
    domains,
    email_events,
    idempotency_keys,
    messages,
    recipients,
    scheduled_emails,
    suppressions,
    work_items,
)
from postroom.models.team import projects, teams
from postroom.models.types import metadata

__all__ = [
    "api_keys",
    "auth_blocks",
    "auth_failures",
    "domain_events",
    "domains",
    "email_events",
    "idempotency_keys",
    "messages",
    "metadata",
    "projects",
    "recipients",
    "scheduled_emails",
    "suppressions",
    "teams",
    "work_items",
]
