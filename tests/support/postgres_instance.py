"""PostgreSQL outages for tests. ``cut_off`` / ``let_in`` take one database of the shared test cluster away and back
(every session ended, no new one allowed). ``PostgresInstance`` is a throwaway PostgreSQL cluster of a test's own (initdb + pg_ctl in a temporary directory, on a free port), for
tests that stop and start the database server: the shared test cluster is never restarted.

The cluster belongs to an unprivileged owner (``postgres`` when the tests run as root, else the current user);
``trust`` authentication on loopback only.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import asyncpg

from tests.conftest import PG_ADMIN_URL, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PostgresInstance:
    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="postroom-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._owner = "postgres" if os.geteuid() == 0 else None
        if self._owner is not None:
            record = pwd.getpwnam(self._owner)
            os.chown(self.root, record.pw_uid, record.pw_gid)
        self.root.chmod(0o755)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postroom@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self._owner, "--"] if self._owner is not None else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)  # noqa: S603

    def init(self) -> PostgresInstance:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postroom", "-A", "trust", "--no-sync")
        return self.start()

    def start(self) -> PostgresInstance:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c max_connections=200"
        )
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (as a restart or a failover does); ``immediate`` is a crash."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def admin_sql(sql: str, url: str = PG_ADMIN_URL) -> None:
    """Run one statement as the test cluster's administrator."""

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def cut_off(database: str) -> None:
    """No new session on ``database``, and every current one (servers' pools, workers' listeners) ended."""
    admin_sql(f'ALTER DATABASE "{database}" CONNECTION LIMIT 0')
    admin_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )


def let_in(database: str) -> None:
    admin_sql(f'ALTER DATABASE "{database}" CONNECTION LIMIT -1')
