"""The filtered contact listings run on indexes on both databases: EXPLAIN names the index, and no plan scans the
whole contacts table, so a page costs the same at 1,000 contacts as at 100,000 (bench/audience.py measures it).
The table gets 20,000 contacts and fresh statistics: on a much smaller one PostgreSQL rightly prefers to scan."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, text

from postroom.audience import queries
from postroom.core.clock import utcnow
from postroom.core.ids import new_id
from postroom.models import contact_lists, contacts
from tests.conftest import Backend
from tests.system.cluster import new_team

SIZE = 20_000


@pytest.fixture(scope="module")
def audience(backend: Backend) -> tuple[int, str]:
    """A team with SIZE contacts, all on one list, 50 of them on another and 50 unsubscribed (statistics fresh)."""
    team_id = new_team(backend)
    list_id = new_id("lst")

    def fill(conn: Connection) -> None:
        now = utcnow()
        queries.insert_list(conn, team_id, list_id, "sample", now)
        everyone = new_id("lst")
        queries.insert_list(conn, team_id, everyone, "everyone", now)
        rows: list[dict[str, Any]] = [
            {"id": new_id("ctc"), "team_id": team_id, "email": f"p{i}@example.test",
             "status": "unsubscribed" if i % 400 == 0 else "subscribed", "properties": {}, "created_at": now,
             "updated_at": now}
            for i in range(SIZE)
        ]  # fmt: skip
        conn.execute(contacts.insert(), rows)
        conn.execute(contact_lists.insert(), [{"list_id": list_id, "contact_id": r["id"]} for r in rows[::400]])
        conn.execute(contact_lists.insert(), [{"list_id": everyone, "contact_id": r["id"]} for r in rows])
        for table in ("contacts", "contact_lists"):  # only these: statistics of other tables change other tests' plans
            conn.execute(text(f"ANALYZE {table}"))

    backend.write(fill)
    return team_id, list_id


def _plan(backend: Backend, query: Any) -> str:
    def explain(conn: Connection) -> str:
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        return "\n".join(str(row[-1]) for row in conn.execute(text(prefix + sql)))

    return backend.read(explain)


def test_a_list_filter_is_driven_by_the_membership_index(backend: Backend, audience: tuple[int, str]) -> None:
    team_id, list_id = audience
    plan = _plan(backend, queries.contacts_query(team_id, list_id=list_id).limit(20))
    if backend.name == "sqlite":
        assert "contact_lists USING COVERING INDEX sqlite_autoindex_contact_lists_1 (list_id=?)" in plan, plan
        assert "SCAN contacts" not in plan, plan
    else:
        assert "pk_contact_lists" in plan, plan
        assert "Seq Scan on contacts" not in plan, plan


def test_a_status_filter_uses_the_team_status_index(backend: Backend, audience: tuple[int, str]) -> None:
    team_id, _ = audience
    plan = _plan(backend, queries.contacts_query(team_id, status="unsubscribed").limit(20))
    assert "ix_contacts_team_id_status_id" in plan, plan
    assert "SCAN contacts" not in plan and "Seq Scan on contacts" not in plan, plan
