"""Settings: the only module that reads the environment.

Every setting is a ``POSTROOM_*`` variable with a default that works on a fresh machine (embedded SQLite under
``./postroom-data``). Settings are validated once at start; a bad value stops the program with a message naming
the variable.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from postroom.core.crypto import load_server_secret
from postroom.core.netaddr import AllowlistError, IPNetwork, parse_allowlist


class ConfigError(ValueError):
    """A setting has a value Postroom cannot run with; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("postroom-data")
    """``POSTROOM_DATA_DIR``: where the embedded database (and later certificates and keys) live."""
    database_url: str = ""
    """``POSTROOM_DATABASE_URL``: ``postgresql://user:pass@host/db`` for PostgreSQL; empty means SQLite in data_dir."""
    host: str = "127.0.0.1"
    """``POSTROOM_HOST``: the address ``postroom serve`` listens on."""
    port: int = 8025
    """``POSTROOM_PORT``: the HTTP port."""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    """``POSTROOM_TRUSTED_PROXIES``: peers whose ``X-Forwarded-For`` is believed (addresses or CIDRs; ``*`` refused)."""
    metrics_allowed_ips: tuple[IPNetwork, ...] = field(default_factory=lambda: parse_allowlist("127.0.0.1, ::1"))
    """``POSTROOM_METRICS_ALLOWED_IPS``: who may scrape ``/metrics`` (default: this machine only)."""
    auth_lockout_failures: int = 5
    """``POSTROOM_AUTH_LOCKOUT_FAILURES``: failed authentications from one IP that trigger a block."""
    auth_lockout_window_seconds: int = 300
    """``POSTROOM_AUTH_LOCKOUT_WINDOW``: the window (seconds) in which those failures are counted."""
    auth_lockout_block_seconds: int = 900
    """``POSTROOM_AUTH_LOCKOUT_BLOCK``: how long (seconds) the IP is then refused."""
    key_last_used_interval_seconds: int = 60
    """How stale ``last_used_at`` may get before a request writes it again (the IP is written when it changes)."""
    log_level: str = "info"
    """``POSTROOM_LOG_LEVEL``: debug, info, warning or error."""
    mail_hostname: str = "localhost"
    """``POSTROOM_MAIL_HOSTNAME``: this server's name in EHLO and in Message-IDs."""
    mail_hostname_explicit: bool = False
    """Whether ``POSTROOM_MAIL_HOSTNAME`` was set (otherwise ``mail_hostname`` is the machine's FQDN)."""
    return_path_host: str = ""
    """``POSTROOM_RETURN_PATH_HOST``: the host bounces come back to (envelope sender domain, the target of sending
    subdomains' return-path CNAME, the MX of the bounce listener); empty means ``mail_hostname``."""
    spf_includes: tuple[str, ...] = ()
    """``POSTROOM_SPF_INCLUDE``: domains whose SPF record lists our sending hosts (``include:`` in customers' SPF)."""
    spf_addresses: tuple[IPNetwork, ...] = ()
    """``POSTROOM_SPF_IP``: addresses/CIDRs we send from (``ip4:``/``ip6:`` in customers' SPF). With neither set,
    customers' SPF names ``a:<mail hostname>``."""
    domain_recheck_seconds: int = 6 * 3600
    """``POSTROOM_DOMAIN_RECHECK_INTERVAL``: how often (seconds) every domain's DNS records are checked again."""
    domain_grace_seconds: int = 24 * 3600
    """``POSTROOM_DOMAIN_GRACE``: how long (seconds) a verified domain whose DKIM record disappeared may still send."""
    dns_server: str | None = None
    """``POSTROOM_DNS_SERVER``: ``host[:port]`` of the resolver used for MX lookups (default: the system's)."""
    mx_port: int = 25
    """``POSTROOM_MX_PORT``: the port recipients' mail servers are reached on (25; other values for test networks)."""
    relay_url: str | None = None
    """``POSTROOM_RELAY_URL``: ``smtp://[user:password@]host:port`` (or ``smtps://``) to hand all mail to a relay."""
    delivery_lifetime_seconds: int = 3 * 24 * 3600
    """``POSTROOM_DELIVERY_LIFETIME``: seconds a temporarily failing recipient is retried before it bounces."""
    retry_base_seconds: int = 300
    """``POSTROOM_RETRY_BASE``: the first retry delay (seconds); it doubles per attempt up to ``retry_max_seconds``."""
    retry_max_seconds: int = 4000
    """``POSTROOM_RETRY_MAX``: the longest delay (seconds) between two delivery attempts."""
    smtp_timeout_seconds: int = 60
    """``POSTROOM_SMTP_TIMEOUT``: per-command timeout (seconds) talking to a recipient's server."""
    worker_concurrency: int = 16
    """``POSTROOM_WORKER_CONCURRENCY``: work items (one per message and recipient domain) run at once per worker."""
    destination_concurrency: int = 8
    """``POSTROOM_DESTINATION_CONCURRENCY``: SMTP deliveries a worker process runs at once to one destination
    (the most preferred MX host of the recipient domain); the rest wait in line without holding a worker slot."""
    relay_concurrency: int = 16
    """``POSTROOM_RELAY_CONCURRENCY``: the same cap for the relay of ``POSTROOM_RELAY_URL``, when one is set."""
    worker_lease_seconds: int = 300
    """``POSTROOM_WORKER_LEASE``: how long (seconds) a claimed work item is reserved for the worker that claimed it;
    after a crash another worker takes it over once this has passed."""
    worker_shutdown_seconds: int = 30
    """``POSTROOM_WORKER_SHUTDOWN_TIMEOUT``: on SIGTERM a worker stops claiming and lets in-flight work finish for at
    most this long (seconds); what is still running then is stopped and its leases released for other workers."""
    database_pool_size: int = 20
    """``POSTROOM_DATABASE_POOL_SIZE``: PostgreSQL connections a process may open per pool (it has two, reads and
    writes, plus one for pgqueuer in a worker and up to 4 for rate limits in an API process); keep the sum over
    every process under the server's ``max_connections``."""
    database_connect_timeout_seconds: float = 1.5
    """``POSTROOM_DATABASE_CONNECT_TIMEOUT``: seconds to open a PostgreSQL connection before the request is answered
    503; a database that is down or unreachable costs a request at most about this long."""
    database_statement_timeout_seconds: float = 5.0
    """``POSTROOM_DATABASE_STATEMENT_TIMEOUT``: PostgreSQL's ``statement_timeout`` for every statement Postroom runs
    (schema migrations excepted); a statement over it is cancelled and its request answered 503."""
    database_pool_timeout_seconds: float = 3.0
    """``POSTROOM_DATABASE_POOL_TIMEOUT``: seconds a request waits for a free pooled connection before 503."""
    worker_reconnect_seconds: int = 300
    """``POSTROOM_WORKER_RECONNECT_TIMEOUT``: how long (seconds) a dispatcher that lost its database keeps
    reconnecting (with capped, jittered backoff) before the process exits with status 75 for its service manager
    to restart it."""
    api_processes: int = 1
    """``POSTROOM_API_PROCESSES`` (or ``postroom api --processes``): how many processes ``postroom api`` answers
    with, on one port; about one per core."""
    rate_limit: str = "1000/second"
    """``POSTROOM_RATE_LIMIT``: requests per team to every keyed ``/api`` route, in ``limits`` notation
    (``3/second``, ``100/minute;5000/hour``); ``off`` disables it. Lettr's hosted default is ``3/second``."""
    send_rate_limit: str = "1000/second"
    """``POSTROOM_SEND_RATE_LIMIT``: requests per team to the send routes (``POST /emails``, ``/emails/scheduled``),
    counted on top of ``rate_limit``; ``off`` disables it."""
    redis_url: str | None = None
    """``POSTROOM_REDIS_URL``: ``redis://host:6379/0`` to keep rate-limit counters in Redis (needs the ``redis``
    package); otherwise PostgreSQL installations share them in the database and SQLite keeps them in memory."""
    webhook_allow_private: bool = False
    """``POSTROOM_WEBHOOK_ALLOW_PRIVATE``: 1 lets webhooks reach private, loopback, link-local and other internal
    addresses (internal receivers, tests); 0 (default) refuses them at registration and at every delivery."""
    webhook_retry_scale: float = 1.0
    """``POSTROOM_WEBHOOK_RETRY_SCALE``: multiplies the webhook retry delays (1 m, 5 m, 30 m, 2 h, 8 h, 24 h); values
    below 1 shorten the ladder for test installations, e.g. 0.001 turns 1 m into 60 ms."""
    secret_key: str = field(default="", repr=False)
    """``POSTROOM_SECRET_KEY``: the installation's root secret (sealing DKIM keys, signing tokens). Empty: a random
    key kept in ``<data dir>/secret.key``. Processes sharing one PostgreSQL database must share it."""
    smtp_host: str = ""
    """``POSTROOM_SMTP_HOST``: the address the SMTP listeners bind; empty means ``host`` (the HTTP address)."""
    smtp_port: int = 2587
    """``POSTROOM_SMTP_PORT``: submission with STARTTLS and AUTH (the API key as password); 0 turns it off."""
    smtps_port: int = 2465
    """``POSTROOM_SMTPS_PORT``: submission over implicit TLS; 0 turns it off."""
    bounce_port: int = 2525
    """``POSTROOM_BOUNCE_PORT``: bounce and complaint intake (the return-path host's MX, no AUTH); 0 turns it off."""
    smtp_tls_cert: Path | None = None
    """``POSTROOM_SMTP_TLS_CERT``: PEM certificate chain for the SMTP listeners; unset: a self-signed one in the
    data directory (development only)."""
    smtp_tls_key: Path | None = None
    """``POSTROOM_SMTP_TLS_KEY``: the PEM private key of ``smtp_tls_cert``."""
    smtp_allow_plain: bool = False
    """``POSTROOM_SMTP_ALLOW_PLAIN``: 1 lets clients authenticate on the submission port without STARTTLS."""
    public_url: str = ""
    """``POSTROOM_PUBLIC_URL``: where recipients reach this server (``https://mail.example.com``): the base of open
    and click tracking links, and the target of tracking domains' CNAME. Empty means ``http://<host>:<port>``."""
    tracking_rate_limit: str = "60/second"
    """``POSTROOM_TRACKING_RATE_LIMIT``: requests per client IP to the public tracking endpoints; ``off`` disables
    it. Over it a request gets 429 and records nothing."""
    tracking_write_behind: bool = False
    """``POSTROOM_TRACKING_WRITE_BEHIND``: 1 answers opens and clicks as soon as the token checks, and records the
    event in the background (group-committed), falling back to waiting when many writes are pending; a crash can
    lose the events of the last moments. 0 (default) commits each event before answering."""
    inbox_max_messages: int = 1000
    """``POSTROOM_INBOX_MAX_MESSAGES``: captured sandbox messages kept per team; older ones are dropped first."""
    inbox_max_age_seconds: int = 7 * 24 * 3600
    """``POSTROOM_INBOX_MAX_AGE``: seconds a captured sandbox message is kept (default 7 days)."""

    @property
    def smtp_listen_host(self) -> str:
        """Where the SMTP listeners bind: ``smtp_host``, or the HTTP host."""
        return self.smtp_host or self.host

    @property
    def public_base_url(self) -> str:
        """``public_url`` without a trailing slash, or this server's own HTTP address."""
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"

    @property
    def bounce_host(self) -> str:
        """Where bounces are addressed: ``return_path_host``, or this server's mail name."""
        return self.return_path_host or self.mail_hostname

    @cached_property
    def server_secret(self) -> bytes:
        """The root secret as 32 bytes (see ``secret_key``); read or created on first use."""
        return load_server_secret(self.secret_key, self.data_dir)

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "postroom.db"

    @property
    def effective_database_url(self) -> str:
        """The SQLAlchemy URL: PostgreSQL through asyncpg, or the embedded SQLite file."""
        url = self.database_url
        if not url:
            return f"sqlite:///{self.sqlite_path.resolve()}"
        for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url[len(prefix) :]
        if url.startswith("sqlite:///"):
            return url
        raise ConfigError(
            f"POSTROOM_DATABASE_URL must start with postgresql:// or sqlite:///, got {url.split('://', 1)[0]!r}"
        )


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int = 10**9) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _bounded_float(env: Mapping[str, str], name: str, default: float, *, maximum: float, what: str) -> float:
    """A number greater than 0 and at most ``maximum``; ``what`` names it in the error."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
    if not 0 < value <= maximum:
        raise ConfigError(f"{name} must be greater than 0 and at most {maximum:g}, got {raw}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds (fractions allowed), at most an hour."""
    return _bounded_float(env, name, default, maximum=3600, what="a number of seconds")


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    return _bounded_float(env, name, default, maximum=1, what="a number")


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "0").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")


def _networks(env: Mapping[str, str], name: str, default: str) -> tuple[IPNetwork, ...]:
    raw = env.get(name, default)
    if any(entry.strip() == "*" for entry in raw.split(",")):
        raise ConfigError(
            f"{name} must not contain '*': trusting every peer lets any client choose its own address; "
            "list the proxies' addresses or CIDR ranges"
        )
    try:
        return parse_allowlist(raw)
    except AllowlistError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str:
    """A ``limits`` rate string (``10/second``, ``100/minute;5000/hour``) or ``off``, checked now."""
    raw = (env.get(name) or default).strip()
    if raw.lower() == "off":
        return "off"
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name} must look like 10/second or 100/minute;5000/hour (or off), got {raw!r}") from None
    return raw


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from ``env`` (default: the process environment); ``overrides`` win (command-line flags)."""
    env = os.environ if env is None else env
    values: dict[str, object] = {
        "data_dir": Path(env.get("POSTROOM_DATA_DIR") or "postroom-data"),
        "database_url": env.get("POSTROOM_DATABASE_URL", ""),
        "host": env.get("POSTROOM_HOST") or "127.0.0.1",
        "port": _int(env, "POSTROOM_PORT", 8025, minimum=1, maximum=65535),
        "trusted_proxies": _networks(env, "POSTROOM_TRUSTED_PROXIES", ""),
        "metrics_allowed_ips": _networks(env, "POSTROOM_METRICS_ALLOWED_IPS", "127.0.0.1, ::1"),
        "auth_lockout_failures": _int(env, "POSTROOM_AUTH_LOCKOUT_FAILURES", 5, minimum=1),
        "auth_lockout_window_seconds": _int(env, "POSTROOM_AUTH_LOCKOUT_WINDOW", 300, minimum=1),
        "auth_lockout_block_seconds": _int(env, "POSTROOM_AUTH_LOCKOUT_BLOCK", 900, minimum=1),
        "log_level": (env.get("POSTROOM_LOG_LEVEL") or "info").lower(),
        "mail_hostname": env.get("POSTROOM_MAIL_HOSTNAME") or socket.getfqdn() or "localhost",
        "mail_hostname_explicit": bool(env.get("POSTROOM_MAIL_HOSTNAME")),
        "return_path_host": (env.get("POSTROOM_RETURN_PATH_HOST") or "").strip().lower().rstrip("."),
        "spf_includes": tuple(
            d.strip().lower().rstrip(".") for d in (env.get("POSTROOM_SPF_INCLUDE") or "").split(",") if d.strip()
        ),
        "spf_addresses": _networks(env, "POSTROOM_SPF_IP", ""),
        "domain_recheck_seconds": _int(env, "POSTROOM_DOMAIN_RECHECK_INTERVAL", 6 * 3600, minimum=1),
        "domain_grace_seconds": _int(env, "POSTROOM_DOMAIN_GRACE", 24 * 3600, minimum=0),
        "dns_server": env.get("POSTROOM_DNS_SERVER") or None,
        "mx_port": _int(env, "POSTROOM_MX_PORT", 25, minimum=1, maximum=65535),
        "relay_url": env.get("POSTROOM_RELAY_URL") or None,
        "delivery_lifetime_seconds": _int(env, "POSTROOM_DELIVERY_LIFETIME", 3 * 24 * 3600, minimum=1),
        "retry_base_seconds": _int(env, "POSTROOM_RETRY_BASE", 300, minimum=1),
        "retry_max_seconds": _int(env, "POSTROOM_RETRY_MAX", 4000, minimum=1),
        "smtp_timeout_seconds": _int(env, "POSTROOM_SMTP_TIMEOUT", 60, minimum=1),
        "worker_concurrency": _int(env, "POSTROOM_WORKER_CONCURRENCY", 16, minimum=1, maximum=1000),
        "destination_concurrency": _int(env, "POSTROOM_DESTINATION_CONCURRENCY", 8, minimum=1, maximum=1000),
        "relay_concurrency": _int(env, "POSTROOM_RELAY_CONCURRENCY", 16, minimum=1, maximum=1000),
        "worker_lease_seconds": _int(env, "POSTROOM_WORKER_LEASE", 300, minimum=1),
        "worker_shutdown_seconds": _int(env, "POSTROOM_WORKER_SHUTDOWN_TIMEOUT", 30, minimum=0, maximum=3600),
        "database_pool_size": _int(env, "POSTROOM_DATABASE_POOL_SIZE", 20, minimum=1, maximum=1000),
        "database_connect_timeout_seconds": _seconds(env, "POSTROOM_DATABASE_CONNECT_TIMEOUT", 1.5),
        "database_statement_timeout_seconds": _seconds(env, "POSTROOM_DATABASE_STATEMENT_TIMEOUT", 5.0),
        "database_pool_timeout_seconds": _seconds(env, "POSTROOM_DATABASE_POOL_TIMEOUT", 3.0),
        "worker_reconnect_seconds": _int(env, "POSTROOM_WORKER_RECONNECT_TIMEOUT", 300, minimum=1),
        "api_processes": _int(env, "POSTROOM_API_PROCESSES", 1),  # its range is checked below, flag included
        "rate_limit": _rate_limit(env, "POSTROOM_RATE_LIMIT", "1000/second"),
        "send_rate_limit": _rate_limit(env, "POSTROOM_SEND_RATE_LIMIT", "1000/second"),
        "redis_url": env.get("POSTROOM_REDIS_URL") or None,
        "webhook_allow_private": _flag(env, "POSTROOM_WEBHOOK_ALLOW_PRIVATE"),
        "webhook_retry_scale": _fraction(env, "POSTROOM_WEBHOOK_RETRY_SCALE", 1.0),
        "secret_key": env.get("POSTROOM_SECRET_KEY", ""),
        "smtp_host": (env.get("POSTROOM_SMTP_HOST") or "").strip(),
        "smtp_port": _int(env, "POSTROOM_SMTP_PORT", 2587, maximum=65535),
        "smtps_port": _int(env, "POSTROOM_SMTPS_PORT", 2465, maximum=65535),
        "bounce_port": _int(env, "POSTROOM_BOUNCE_PORT", 2525, maximum=65535),
        "smtp_tls_cert": Path(env["POSTROOM_SMTP_TLS_CERT"]) if env.get("POSTROOM_SMTP_TLS_CERT") else None,
        "smtp_tls_key": Path(env["POSTROOM_SMTP_TLS_KEY"]) if env.get("POSTROOM_SMTP_TLS_KEY") else None,
        "smtp_allow_plain": _flag(env, "POSTROOM_SMTP_ALLOW_PLAIN"),
        "public_url": (env.get("POSTROOM_PUBLIC_URL") or "").strip(),
        "tracking_rate_limit": _rate_limit(env, "POSTROOM_TRACKING_RATE_LIMIT", "60/second"),
        "tracking_write_behind": _flag(env, "POSTROOM_TRACKING_WRITE_BEHIND"),
        "inbox_max_messages": _int(env, "POSTROOM_INBOX_MAX_MESSAGES", 1000, minimum=1),
        "inbox_max_age_seconds": _int(env, "POSTROOM_INBOX_MAX_AGE", 7 * 24 * 3600, minimum=60),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    processes = values["api_processes"]
    if not isinstance(processes, int) or not 1 <= processes <= 64:
        raise ConfigError(
            f"the number of API processes (--processes, POSTROOM_API_PROCESSES) must be 1 to 64, got {processes}"
        )
    if values["log_level"] not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"POSTROOM_LOG_LEVEL must be debug, info, warning or error, got {values['log_level']!r}")
    relay = values["relay_url"]
    if isinstance(relay, str) and not relay.startswith(("smtp://", "smtps://")):
        raise ConfigError("POSTROOM_RELAY_URL must look like smtp://[user:password@]host:port or smtps://…")
    redis = values["redis_url"]
    if isinstance(redis, str) and not redis.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("POSTROOM_REDIS_URL must look like redis://host:6379/0 (or rediss://, unix://)")
    secret = values["secret_key"]
    if isinstance(secret, str) and secret and len(secret) < 32:
        raise ConfigError("POSTROOM_SECRET_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    public = values["public_url"]
    if isinstance(public, str) and public and not re.fullmatch(r"https?://[^/\s?#]+/?", public):
        raise ConfigError("POSTROOM_PUBLIC_URL must look like https://mail.example.com (a scheme and a host, no path)")
    if (values["smtp_tls_cert"] is None) != (values["smtp_tls_key"] is None):
        raise ConfigError("POSTROOM_SMTP_TLS_CERT and POSTROOM_SMTP_TLS_KEY must be set together")
    settings = Settings(**values)  # type: ignore[arg-type]
    settings.effective_database_url  # noqa: B018 - validates the URL now, not at first use
    return settings
