"""``Prepared`` statements give what ``Connection.execute`` gives, on both engines (on SQLite they skip it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.exc import NoResultFound

from postroom.db.direct import Prepared
from postroom.models import projects, work_items
from tests.conftest import Backend

T0 = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)

_INSERT = Prepared(work_items.insert().returning(work_items.c.id, work_items.c.attempts, work_items.c.run_at))
_BY_REF = Prepared(select(work_items).where(work_items.c.ref == bindparam("ref")).order_by(work_items.c.id))
_BUMP = Prepared(
    update(work_items)
    .where(work_items.c.ref == bindparam("item_ref"), work_items.c.status == "queued")
    .values(attempts=work_items.c.attempts + 1, run_at=bindparam("new_run_at"))
)
_DEFAULT_PROJECTS = Prepared(
    select(projects.c.id, projects.c.is_default).where(
        projects.c.is_default.is_(True), projects.c.team_id == bindparam("team_id")
    )
)


def _item(ref: str) -> dict[str, object]:
    return {"kind": "deliver", "ref": ref, "status": "queued", "run_at": T0, "created_at": T0, "updated_at": T0}


def test_insert_returning_select_and_update_match_sqlalchemy(backend: Backend) -> None:
    ref = f"direct-{backend.name}"

    def work(conn: Connection) -> tuple[Any, ...]:
        inserted = _INSERT.execute(conn, _item(ref)).one()  # "attempts" left out: its column default applies
        _INSERT.execute(conn, _item(ref))
        bumped = _BUMP.execute(conn, {"item_ref": ref, "new_run_at": T0 + timedelta(seconds=1)}).rowcount
        direct = _BY_REF.execute(conn, {"ref": ref}).fetchall()
        expected = conn.execute(select(work_items).where(work_items.c.ref == ref).order_by(work_items.c.id)).fetchall()
        return inserted, bumped, direct, expected

    inserted, bumped, direct, expected = backend.write(work)
    try:
        assert inserted.attempts == 0 and inserted.run_at == T0 and isinstance(inserted.id, int)
        assert bumped == 2
        assert [tuple(r) for r in direct] == [tuple(r) for r in expected]
        assert len(direct) == 2
        for row in direct:
            assert row.attempts == 1
            assert row.run_at == T0 + timedelta(seconds=1) and row.run_at.tzinfo is not None
            assert row._mapping["ref"] == ref
    finally:
        backend.write(lambda conn: conn.execute(delete(work_items).where(work_items.c.ref == ref)))


def test_results_answer_like_sqlalchemy_results(backend: Backend) -> None:
    def work(conn: Connection) -> tuple[Any, ...]:
        team = {"team_id": backend.team_id}
        rows = _DEFAULT_PROJECTS.execute(conn, team).fetchall()
        return rows, _DEFAULT_PROJECTS.execute(conn, team).scalar(), _BY_REF.execute(conn, {"ref": "none such"}).first()

    rows, first_id, nothing = backend.read(work)
    assert len(rows) == 1 and rows[0].is_default is True and first_id == rows[0].id
    assert nothing is None
    with pytest.raises(NoResultFound):
        backend.read(lambda conn: _BY_REF.execute(conn, {"ref": "none such"}).one())


def test_a_missing_parameter_is_an_error_not_a_null(backend: Backend) -> None:
    with pytest.raises(KeyError if backend.name == "sqlite" else Exception):
        backend.read(lambda conn: _BY_REF.execute(conn, {}).fetchall())


def test_expanding_in_lists_are_refused_on_sqlite(backend: Backend) -> None:
    if backend.name != "sqlite":
        pytest.skip("on PostgreSQL a Prepared statement is an ordinary execute")
    statement = Prepared(select(work_items.c.id).where(work_items.c.status.in_(("queued", "leased"))))
    with pytest.raises(ValueError, match="expanding IN"):
        backend.read(lambda conn: statement.execute(conn).fetchall())
