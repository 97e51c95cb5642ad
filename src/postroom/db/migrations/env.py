"""Alembic environment: Postroom always hands Alembic an open connection (see ``postroom.db.engine``).

For ``alembic revision --autogenerate`` during development, run ``alembic`` from the repository root; it then
connects to the SQLite file named by the settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from postroom.models import metadata

connection = context.config.attributes.get("connection")


def _run(conn: object) -> None:
    context.configure(
        connection=conn,  # type: ignore[arg-type]
        target_metadata=metadata,
        render_as_batch=getattr(conn, "dialect").name == "sqlite",  # noqa: B009
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    from postroom.config import load_settings

    engine = create_engine(load_settings().effective_database_url.replace("+asyncpg", "+psycopg"))
    with engine.begin() as conn:
        _run(conn)
