"""Sending domains: registration with a DKIM key pair, and the approval that lets a team send from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from postroom.core.ids import new_id
from postroom.delivery.dkim import DkimKey, generate_rsa_key
from postroom.domains import queries
from postroom.errors import DomainNotFound, ResourceAlreadyExists, ValidationFailed

_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]")


class DomainAlreadyExists(ResourceAlreadyExists):
    default_message = "This domain is already registered."


@dataclass(frozen=True, slots=True)
class SendingDomain:
    id: str
    team_id: int
    domain: str
    status: str
    dkim_selector: str
    dkim_public_key: str
    dkim_private_key: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> SendingDomain:
        m = row._mapping
        return cls(**{name: m[name] for name in cls.__slots__})

    @property
    def can_send(self) -> bool:
        return self.status == "approved"

    @property
    def dkim_key(self) -> DkimKey:
        return DkimKey(domain=self.domain, selector=self.dkim_selector, private_key_pem=self.dkim_private_key.encode())

    @property
    def dkim_record_name(self) -> str:
        return f"{self.dkim_selector}._domainkey.{self.domain}"


def normalise_domain(name: str) -> str:
    """Lower-case, no trailing dot; 422 unless it is a valid DNS name with at least two labels."""
    cleaned = name.strip().lower().rstrip(".")
    if not _DOMAIN.fullmatch(cleaned):
        raise ValidationFailed({"domain": ["The domain must be a valid domain name (e.g., example.com)."]})
    return cleaned


def add_domain(conn: Connection, *, team_id: int, name: str, approve: bool, now: datetime) -> SendingDomain:
    """Register ``name`` for ``team_id`` with a new RSA-2048 DKIM key; approved at once when ``approve``."""
    domain = normalise_domain(name)
    if queries.domain_anywhere(conn, domain) is not None:
        raise DomainAlreadyExists()
    private_pem, public_txt = generate_rsa_key()
    domain_id = new_id("dom")
    queries.insert_domain(
        conn,
        {
            "id": domain_id,
            "team_id": team_id,
            "domain": domain,
            "status": "approved" if approve else "pending",
            "dkim_selector": f"pr{now:%Y%m}",
            "dkim_private_key": private_pem.decode(),
            "dkim_public_key": public_txt,
            "created_at": now,
            "updated_at": now,
        },
    )
    return get_domain(conn, team_id=team_id, name=domain)


def get_domain(conn: Connection, *, team_id: int, name: str) -> SendingDomain:
    row = queries.domain_in_team(conn, team_id, name.lower())
    if row is None:
        raise DomainNotFound()
    return SendingDomain.from_row(row)


def find_domain(conn: Connection, *, team_id: int, name: str) -> SendingDomain | None:
    row = queries.domain_in_team(conn, team_id, name.lower())
    return None if row is None else SendingDomain.from_row(row)


def approve_domain(conn: Connection, *, team_id: int, name: str, now: datetime) -> SendingDomain:
    current = get_domain(conn, team_id=team_id, name=name)
    queries.update_domain(conn, current.id, {"status": "approved", "updated_at": now})
    return get_domain(conn, team_id=team_id, name=name)


def list_domains(conn: Connection, *, team_id: int | None) -> list[SendingDomain]:
    return [SendingDomain.from_row(row) for row in queries.domains_in_team(conn, team_id)]
