"""Per-team rate limits, shared by every API process of an installation.

The check runs in the guard right after the scope check (401 → IP 403 → scope 403 → 429 → 422), so
a request the key may not make never costs the team its quota, and a request over the limit is refused before
its body is read. Two limits apply, both per team and shared by all of its keys:

- ``POSTROOM_RATE_LIMIT`` on every keyed ``/api`` request;
- ``POSTROOM_SEND_RATE_LIMIT`` on the send routes (scope ``emails:send``) on top of it.

Counting is a fixed window per limit, in the ``limits`` library's notation and behind its storage interface. Where
the counters live decides who shares them:

- ``POSTROOM_REDIS_URL`` set: ``RedisStorage`` below, for installations that already run one (one script call
  per request, whatever the number of limits);
- PostgreSQL without Redis: ``DatabaseStorage`` below, a ``limits`` storage on the ``rate_limit_counters`` table
  (UNLOGGED, one upsert per request on a small asyncpg pool of its own), so every ``postroom api`` process on the
  database counts against the same window;
- embedded SQLite: ``FileStorage`` below, a counters file beside the database that every process of the
  installation maps (``auth/windows.py``), so ``postroom api --processes N`` and the SMTP listeners share windows.

Every response to a request that reached the check carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (unix seconds) of the tightest limit that applied; a refusal is 429 ``rate_limit_exceeded``
with ``Retry-After``. Requests refused earlier (no key, wrong IP, wrong scope) and public routes carry none: they
are not counted against any team. If the counter store fails the request is let through and the failure logged:
an outage of the store must not take the API down with it; on PostgreSQL without Redis the store is the database
itself, so a database that is unavailable answers 503 here, as the request would next.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from litestar.connection import ASGIConnection
from litestar.types import Message
from litestar.types import Scope as AsgiScope

from postroom.auth.scopes import Scope
from postroom.auth.windows import WindowFile
from postroom.config import ConfigError, Settings
from postroom.db.engine import Timeouts, sqlite_file
from postroom.db.errors import database_unavailable
from postroom.errors import DatabaseUnavailable, RateLimitExceeded

log = logging.getLogger("postroom.auth")

SEND_SCOPES = frozenset({Scope.EMAILS_SEND})
"""Scopes whose routes also count against the send limit."""

_HEADERS_STATE = "rate_limit_headers"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one check: the tightest limit that applied, and whether the request is over it."""

    limit: int
    remaining: int
    reset: int
    """Unix seconds at which the window of that limit ends."""
    retry_after: int | None = None
    """Seconds until the request may be repeated; None when it is within every limit."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]


class CounterStorage(Storage):
    """A ``limits`` storage that also counts a request against several windows in one step."""

    @abstractmethod
    async def incr_many(self, counters: Sequence[tuple[str, int]]) -> list[tuple[int, float]]:
        """Add one to the window of each ``(key, expiry in seconds)``: for each, its count after that and when it
        ends (unix seconds), in the order given. A window that has ended starts again."""


class DatabaseStorage(CounterStorage):
    """A ``limits`` storage for fixed windows in PostgreSQL's ``rate_limit_counters`` table.

    ``incr`` and ``incr_many`` are one ``INSERT … ON CONFLICT DO UPDATE … RETURNING`` in autocommit, for all the
    keys given: it starts a new window when a row's window has ended (by the database's clock) and otherwise adds to
    it, atomically under the row lock, so concurrent processes never lose a count. A window's end never moves while
    it is open, so the expiry returned is remembered and ``get_expiry`` answers from it without another round trip.
    """

    STORAGE_SCHEME = ["postroom+postgresql"]

    _INCR_MANY = """
        INSERT INTO rate_limit_counters AS c (key, count, expires_at)
        SELECT key, $3::integer, extract(epoch FROM clock_timestamp())::float8 + expiry
        FROM unnest($1::text[], $2::float8[]) AS t(key, expiry)
        ON CONFLICT (key) DO UPDATE SET
            count = CASE WHEN c.expires_at <= extract(epoch FROM clock_timestamp())::float8
                         THEN excluded.count ELSE c.count + excluded.count END,
            expires_at = CASE WHEN c.expires_at <= extract(epoch FROM clock_timestamp())::float8
                              THEN excluded.expires_at ELSE c.expires_at END
        RETURNING key, count, expires_at, extract(epoch FROM clock_timestamp())::float8 AS now
    """
    _LEFT = """
        SELECT expires_at - extract(epoch FROM clock_timestamp())::float8 AS left
        FROM rate_limit_counters WHERE key = $1
    """
    _GET = """
        SELECT count, expires_at FROM rate_limit_counters
        WHERE key = $1 AND expires_at > extract(epoch FROM clock_timestamp())::float8
    """

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        dsn = (uri or "").removeprefix("postroom+")
        self._dsn = dsn.replace("postgresql+asyncpg://", "postgresql://", 1)
        self._connect_args: dict[str, Any] = dict(options.get("connect_args") or {})
        self._pool: Any = None
        self._pool_lock: asyncio.Lock | None = None
        self._expiries: dict[str, float] = {}
        """Window ends seen by this process, as local ``time.time()`` values (corrected for clock skew)."""

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        import asyncpg

        return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

    async def _connections(self) -> Any:
        # Created on first use: asyncpg pools belong to the event loop that opened them (the server's).
        if self._pool is None:
            if self._pool_lock is None:
                self._pool_lock = asyncio.Lock()
            async with self._pool_lock:
                if self._pool is None:
                    import asyncpg

                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=4, reset=_nothing_to_reset, **self._connect_args
                    )
        return self._pool

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return (await self._incr([(key, expiry)], amount))[0][0]

    async def incr_many(self, counters: Sequence[tuple[str, int]]) -> list[tuple[int, float]]:
        return await self._incr(counters, 1)

    async def _incr(self, counters: Sequence[tuple[str, int]], amount: int) -> list[tuple[int, float]]:
        # Keys in one order everywhere, so two statements locking the same rows cannot deadlock.
        ordered = sorted(dict(counters).items())
        pool = await self._connections()
        rows = await pool.fetch(self._INCR_MANY, [k for k, _ in ordered], [float(e) for _, e in ordered], amount)
        now = time.time()
        windows = {}
        for row in rows:
            self._expiries[row["key"]] = ends = now + (row["expires_at"] - row["now"])
            windows[row["key"]] = (int(row["count"]), ends)
        return [windows[key] for key, _ in counters]

    async def get(self, key: str) -> int:
        pool = await self._connections()
        row = await pool.fetchrow(self._GET, key)
        return 0 if row is None else int(row["count"])

    async def get_expiry(self, key: str) -> float:
        known = self._expiries.get(key)
        if known is not None and known > time.time():
            return known
        pool = await self._connections()
        row = await pool.fetchrow(self._LEFT, key)
        return time.time() + (0.0 if row is None else max(0.0, float(row["left"])))

    async def check(self) -> bool:
        try:
            pool = await self._connections()
            return bool(await pool.fetchval("SELECT 1") == 1)
        except Exception:
            return False

    async def reset(self) -> int | None:
        pool = await self._connections()
        self._expiries.clear()
        return int(
            await pool.fetchval("WITH gone AS (DELETE FROM rate_limit_counters RETURNING 1) SELECT count(*) FROM gone")
        )

    async def clear(self, key: str) -> None:
        pool = await self._connections()
        self._expiries.pop(key, None)
        await pool.execute("DELETE FROM rate_limit_counters WHERE key = $1", key)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class RedisStorage(CounterStorage):
    """Fixed windows in Redis (``POSTROOM_REDIS_URL``: ``redis://``, ``rediss://`` or ``unix://``), shared by every
    process that uses the same server.

    A request's counters are added by one Lua script, so a send with two limits costs one round trip instead of
    the four of ``limits``' own Redis storage (an increment, then a TTL read, per limit). The script does what
    ``limits`` does for a fixed window: ``INCRBY``, and ``EXPIRE`` when that started the window.
    """

    STORAGE_SCHEME = ["postroom+redis"]
    PREFIX = "postroom-ratelimit:"
    _SCRIPT = """
        local replies = {}
        local amount = tonumber(ARGV[1])
        for i, key in ipairs(KEYS) do
            local count = redis.call("INCRBY", key, amount)
            if count == amount then
                redis.call("EXPIRE", key, ARGV[i + 1])
            end
            replies[#replies + 1] = count
            replies[#replies + 1] = redis.call("PTTL", key)
        end
        return replies
    """

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        import redis.asyncio

        self._client = redis.asyncio.Redis.from_url((uri or "").removeprefix("postroom+"))
        self._add = self._client.register_script(self._SCRIPT)

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        import redis

        return (redis.RedisError, OSError)

    async def _incr(self, counters: Sequence[tuple[str, int]], amount: int) -> list[tuple[int, float]]:
        replies = await self._add(
            keys=[self.PREFIX + key for key, _ in counters], args=[amount] + [e for _, e in counters]
        )
        now = time.time()
        return [
            (int(count), now + max(0, int(left)) / 1000)
            for count, left in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def incr_many(self, counters: Sequence[tuple[str, int]]) -> list[tuple[int, float]]:
        return await self._incr(counters, 1)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return (await self._incr([(key, expiry)], amount))[0][0]

    async def get(self, key: str) -> int:
        return int(await self._client.get(self.PREFIX + key) or 0)

    async def get_expiry(self, key: str) -> float:
        return time.time() + max(0, int(await self._client.pttl(self.PREFIX + key))) / 1000

    async def check(self) -> bool:
        try:
            pong: Any = self._client.ping()  # typed for redis-py's sync and async clients at once
            return bool(await pong)
        except Exception:
            return False

    async def reset(self) -> int | None:
        keys = [key async for key in self._client.scan_iter(match=self.PREFIX + "*")]
        return int(await self._client.delete(*keys)) if keys else 0

    async def clear(self, key: str) -> None:
        await self._client.delete(self.PREFIX + key)

    async def close(self) -> None:
        await self._client.aclose()


async def _nothing_to_reset(connection: Any) -> None:
    """The counters' statements run in autocommit and leave no session state (no SET, LISTEN, prepared cursors or
    advisory locks), so a connection goes back to the pool without asyncpg's reset query: one round trip less per
    request."""


class FileStorage(CounterStorage):
    """Fixed windows in a counters file beside the SQLite database (``auth/windows.py``), mapped by every process
    of the installation: the API processes of ``postroom api --processes N``, ``postroom serve``'s HTTP and SMTP
    sides, a ``postroom smtp`` of its own. A request's counters are added under one ``flock``, with no await."""

    STORAGE_SCHEME = ["postroom+file"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        path = Path(str(options["path"]))
        path.parent.mkdir(parents=True, exist_ok=True)  # the app may be built before the database is opened
        self._file = WindowFile(str(path))

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return OSError

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        count = 0
        for _ in range(amount):
            count = self._file.add([(key, expiry)], time.time())[0][0]
        return count

    async def incr_many(self, counters: Sequence[tuple[str, int]]) -> list[tuple[int, float]]:
        return self._file.add(counters, time.time())

    async def get(self, key: str) -> int:
        window = self._file.window(key, time.time())
        return 0 if window is None else window[0]

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        window = self._file.window(key, now)
        return now if window is None else window[1]

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        return self._file.clear_all()

    async def clear(self, key: str) -> None:
        self._file.clear(key)

    async def close(self) -> None:
        self._file.close()


def _items(setting: str) -> list[RateLimitItem]:
    return [] if setting == "off" else list(parse_many(setting))


def open_storage(settings: Settings) -> CounterStorage:
    """Redis when configured; else the database on PostgreSQL; else a counters file beside the SQLite database."""
    if settings.redis_url:
        if not settings.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("POSTROOM_REDIS_URL: use a redis://, rediss:// or unix:// URL")
        try:
            return RedisStorage("postroom+" + settings.redis_url)
        except ImportError:
            raise ConfigError("POSTROOM_REDIS_URL: install the 'redis' package") from None
        except ValueError as exc:
            raise ConfigError(f"POSTROOM_REDIS_URL: {exc}") from None
    url = settings.effective_database_url
    if url.startswith("postgresql"):
        return DatabaseStorage("postroom+" + url, connect_args=Timeouts.from_settings(settings).asyncpg_connect_args())
    return FileStorage(path=f"{sqlite_file(url)}.rate-limits")


class RateLimiter:
    """Counts a team's requests against the configured limits and says whether one more is allowed."""

    def __init__(
        self,
        storage: CounterStorage,
        *,
        general: list[RateLimitItem],
        send: list[RateLimitItem],
        public: list[RateLimitItem] | None = None,
    ) -> None:
        self.storage = storage
        # Each limit counts under its own name, so a send limit equal to the general one is still a second counter.
        self._general = [("all", item) for item in general]
        self._send = self._general + [("send", item) for item in send]
        self._public = [("public", item) for item in public or []]
        """Per client IP, on the public (keyless) endpoints: tracking pixels and links."""
        self.enabled = bool(general or send)
        self._keys: dict[tuple[int, bool], list[tuple[str, RateLimitItem]]] = {}

    def _counters(self, team_id: int, send: bool) -> list[tuple[str, RateLimitItem]]:
        """The storage key and limit of each counter a request of ``team_id`` adds to (the keys are made once)."""
        counters = self._keys.get((team_id, send))
        if counters is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            team = str(team_id)
            counters = self._keys[team_id, send] = [
                (item.key_for(name, "team", team), item) for name, item in (self._send if send else self._general)
            ]
        return counters

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            open_storage(settings),
            general=_items(settings.rate_limit),
            send=_items(settings.send_rate_limit),
            public=_items(settings.tracking_rate_limit),
        )

    async def hit(self, team_id: int, scope: Scope) -> Verdict | None:
        """Count one request of ``team_id`` needing ``scope``; None when no limit applies or the store failed."""
        return await self._count(self._counters(team_id, scope in SEND_SCOPES))

    async def hit_public(self, client: str) -> Verdict | None:
        """Count one request to a public endpoint from the address ``client``; None when no limit applies or the
        store failed."""
        return await self._count([(item.key_for(name, "ip", client), item) for name, item in self._public])

    async def _count(self, counters: list[tuple[str, RateLimitItem]]) -> Verdict | None:
        if not counters:
            return None
        tightest: Verdict | None = None
        retry_after: int | None = None
        try:
            windows = await self.storage.incr_many([(key, item.get_expiry()) for key, item in counters])
            for (count, reset), (_key, item) in zip(windows, counters, strict=True):
                if count > item.amount:
                    wait = max(1, math.ceil(reset - time.time()))
                    retry_after = wait if retry_after is None else max(retry_after, wait)
                verdict = Verdict(item.amount, max(0, item.amount - count), math.ceil(reset))
                if tightest is None or verdict.remaining < tightest.remaining:
                    tightest = verdict
        except Exception as exc:
            if isinstance(self.storage, DatabaseStorage) and database_unavailable(exc):
                # The counters live in the database the request needs next: it cannot succeed either.
                raise DatabaseUnavailable() from exc
            log.warning("rate-limit counters unavailable; request let through", exc_info=True)
            return None
        assert tightest is not None
        if retry_after is None:
            return tightest
        return Verdict(tightest.limit, 0, tightest.reset, retry_after)

    async def close(self) -> None:
        closer = getattr(self.storage, "close", None)
        if closer is not None:
            await closer()


async def enforce_rate_limit(connection: ASGIConnection[Any, Any, Any, Any], required: Scope) -> None:
    """Guard step after the scope check: count the request for the caller's team, or refuse it with 429."""
    limiter: RateLimiter = connection.app.state.rate_limiter
    if not limiter.enabled:
        return
    verdict = await limiter.hit(connection.scope["state"]["api_key"].team_id, required)
    if verdict is None:
        return
    connection.scope["state"][_HEADERS_STATE] = verdict.headers()
    if verdict.retry_after is not None:
        raise RateLimitExceeded(verdict.retry_after)


async def add_rate_limit_headers(message: Message, scope: AsgiScope) -> None:
    """``before_send`` hook: put the request's rate-limit headers on its response, whatever produced it."""
    if message["type"] == "http.response.start":
        headers = scope.get("state", {}).get(_HEADERS_STATE)
        if headers:
            message["headers"] = [*message.get("headers", ()), *headers]
