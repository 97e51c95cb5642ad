"""An SQLite database migrated step by step, for tests of what a migration does to rows that already exist."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine

from postroom.db.engine import MIGRATIONS_DIR


class Migrator:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._config = Config()
        self._config.set_main_option("script_location", str(MIGRATIONS_DIR))
        self._config.attributes["connection"] = conn

    def upgrade(self, revision: str) -> None:
        command.upgrade(self._config, revision)

    def downgrade(self, revision: str) -> None:
        command.downgrade(self._config, revision)


@contextmanager
def migrating(path: Path) -> Iterator[Migrator]:
    """A new SQLite database at ``path``, in one transaction, at no revision yet."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            yield Migrator(conn)
    finally:
        engine.dispose()
