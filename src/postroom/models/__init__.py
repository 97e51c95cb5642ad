"""Every table, one module per concept; importing this package registers them all on ``metadata``."""

from postroom.models.account import (
    api_key_ips,
    audit_log,
    dashboard_sessions,
    invitations,
    login_attempts,
    recovery_codes,
    team_members,
    team_settings,
    users,
)
from postroom.models.api_key import api_keys
from postroom.models.audience import (
    audience_lists,
    audience_properties,
    contact_lists,
    contact_topics,
    contacts,
    segments,
    topics,
)
from postroom.models.auth_failure import auth_blocks, auth_failures
from postroom.models.inbox import inbox_messages
from postroom.models.rate_limit import rate_limit_counters
from postroom.models.sending import (
    domain_events,
    domains,
    email_events,
    event_counts,
    idempotency_keys,
    messages,
    recipients,
    scheduled_emails,
    suppressions,
    work_items,
)
from postroom.models.team import projects, teams
from postroom.models.template import folders, template_versions, templates
from postroom.models.types import metadata
from postroom.models.webhook import webhook_alerts, webhook_attempts, webhook_batches, webhook_events, webhooks

__all__ = [
    "api_key_ips",
    "api_keys",
    "audience_lists",
    "audience_properties",
    "audit_log",
    "auth_blocks",
    "auth_failures",
    "contact_lists",
    "contact_topics",
    "contacts",
    "dashboard_sessions",
    "domain_events",
    "domains",
    "email_events",
    "event_counts",
    "folders",
    "idempotency_keys",
    "inbox_messages",
    "invitations",
    "login_attempts",
    "messages",
    "metadata",
    "projects",
    "rate_limit_counters",
    "recipients",
    "recovery_codes",
    "scheduled_emails",
    "segments",
    "suppressions",
    "team_members",
    "team_settings",
    "template_versions",
    "templates",
    "teams",
    "topics",
    "users",
    "webhook_alerts",
    "webhook_attempts",
    "webhook_batches",
    "webhook_events",
    "webhooks",
    "work_items",
]
