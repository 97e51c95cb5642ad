"""Recording opens and clicks: one unit of work per request, from the recipient the token names.

Every request is recorded: an ``open`` event per pixel fetch, a ``click`` event per followed link, each with the
client's ``user_agent`` and ``ip_address``. A recipient's first *human* open also records ``initial_open`` and
sets ``recipients.opened_at``; their first human click sets ``recipients.clicked_at`` (``first_click`` in the
event): unique opens and clicks are counted from those columns, once per recipient.

A request is a *machine* one (``machine_open`` / ``machine_click`` true, with ``machine_reason``) when it is a
``HEAD`` request (a link checker), comes from a known scanner or mail-privacy proxy (by user agent, or from Apple's
17.0.0.0/8, where Mail Privacy Protection prefetches every image), or arrives within ``MACHINE_WINDOW`` of the
delivery (no person opens mail that fast; security gateways do). Machine requests are recorded and sent as webhooks
like the others, flagged, and never count as unique human engagement.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row

from postroom.emails import service as emails_service
from postroom.emails.service import EventType
from postroom.tracking import queries
from postroom.webhooks.service import EventFanout

MACHINE_WINDOW = timedelta(seconds=2)
"""Opens and clicks this soon after the delivery was recorded are taken for machines."""

_MACHINE_AGENTS = re.compile(
    r"bot\b|crawler|spider|scanner|prefetch|preview|barracuda|mimecast|proofpoint|symantec|messagelabs|forcepoint"
    r"|trendmicro|sophos|fireeye|ironport|safelinks|linkscan|python-|curl/|wget/|go-http-client|okhttp|java/"
    r"|libwww|httpclient|headlessbrowser",
    re.IGNORECASE,
)
_PROXY_AGENT = "Mozilla/5.0"
"""Apple Mail Privacy Protection's image proxy sends exactly this and nothing more."""
_PROXY_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)
"""Apple's own network, from which Mail Privacy Protection fetches."""


class MachineReason(StrEnum):
    HEAD_REQUEST = "head_request"
    USER_AGENT = "user_agent"
    PROXY = "privacy_proxy"
    TOO_SOON = "soon_after_delivery"


@dataclass(frozen=True, slots=True)
class Client:
    """Who asked: the request's method, ``User-Agent`` and client address (after trusted proxies)."""

    method: str
    user_agent: str | None
    ip: str | None


def _proxy_address(ip: str | None) -> bool:
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in network for network in _PROXY_NETWORKS)


def machine_reason(client: Client, recipient: Row[Any], now: datetime) -> MachineReason | None:
    """Why the request looks automated, or None for a person."""
    if client.method == "HEAD":
        return MachineReason.HEAD_REQUEST
    agent = (client.user_agent or "").strip()
    if agent == _PROXY_AGENT or _proxy_address(client.ip):
        return MachineReason.PROXY
    if not agent or _MACHINE_AGENTS.search(agent):
        return MachineReason.USER_AGENT
    if recipient.status == "delivered" and now - recipient.updated_at < MACHINE_WINDOW:
        return MachineReason.TOO_SOON
    return None


def _client_fields(client: Client, reason: MachineReason | None) -> dict[str, Any]:
    agent = client.user_agent
    return {
        "user_agent": agent,
        "ip_address": client.ip,
        "geo_ip": None,
        "user_agent_parsed": {
            "agent_family": None,
            "device_brand": None,
            "device_family": None,
            "os_family": None,
            "os_version": None,
            "is_mobile": agent is not None and "mobile" in agent.lower(),
            "is_proxy": reason is MachineReason.PROXY,
            "is_prefetched": reason in (MachineReason.PROXY, MachineReason.HEAD_REQUEST),
        },
        "machine_reason": None if reason is None else reason.value,
    }


def record_open(conn: Connection, *, recipient_id: int, client: Client, now: datetime) -> bool:
    """Record an ``open`` (and, for the recipient's first human one, ``initial_open``); False when the recipient
    no longer exists."""
    recipient = queries.recipient(conn, recipient_id)
    if recipient is None:
        return False
    reason = machine_reason(client, recipient, now)
    details = {**_client_fields(client, reason), "machine_open": reason is not None, "initial_pixel": True}
    fanout = EventFanout(conn, recipient.team_id)
    emails_service.record_recipient_event(conn, recipient, EventType.OPEN, now, details, fanout=fanout)
    if reason is None and queries.mark_first(conn, recipient.id, "opened_at", now):
        emails_service.record_recipient_event(conn, recipient, EventType.INITIAL_OPEN, now, details, fanout=fanout)
    return True


def record_click(conn: Connection, *, recipient_id: int, target: str, client: Client, now: datetime) -> bool:
    """Record a ``click`` on ``target``; False when the recipient no longer exists."""
    recipient = queries.recipient(conn, recipient_id)
    if recipient is None:
        return False
    reason = machine_reason(client, recipient, now)
    first = reason is None and queries.mark_first(conn, recipient.id, "clicked_at", now)
    details = {
        "target_link_url": target,
        "target_link_name": None,
        **_client_fields(client, reason),
        "machine_click": reason is not None,
        "first_click": first,
    }
    emails_service.record_recipient_event(conn, recipient, EventType.CLICK, now, details)
    return True
