"""The ``postroom`` command line.

Every command takes ``--data-dir`` (or ``POSTROOM_DATA_DIR``) or ``--database-url`` (or ``POSTROOM_DATABASE_URL``)
and works while the server runs: the database is the only thing processes share. Bad input exits with status 2
and one line on stderr naming what is wrong; a missing object exits with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection

from postroom import __version__
from postroom.apikeys import service as keys_service
from postroom.apikeys.service import UNCHANGED, ApiKeyRecord
from postroom.audit.service import Actor
from postroom.config import ConfigError, Settings, load_settings
from postroom.core.clock import iso_resource, utcnow
from postroom.core.ids import MAX_ROW_ID
from postroom.db.engine import Database, open_database
from postroom.errors import NotFound, PostroomError, ValidationFailed
from postroom.system import defaults
from postroom.teams import service as teams_service


class UsageError(Exception):
    """Bad input on the command line (exit status 2)."""


def _number(kind: type[int] | type[float], minimum: int, maximum: int) -> Callable[[str], float]:
    """An argparse ``type`` for a number in [minimum, maximum]: anything else (not a number, nan, inf, out of
    range) is a usage error naming the option, in one line."""
    noun = "a whole number" if kind is int else "a number"
    expected = f"must be {noun} from {minimum} to {maximum}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}") from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"{expected}, got {text!r}")
        return value

    return parse


_PORT = _number(int, 1, 65535)
_TEAM = _number(int, 1, MAX_ROW_ID)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"postroom: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _operator() -> str:
    return Actor.operator().name


def _key_json(record: ApiKeyRecord) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": record.id,
        "team_id": record.team_id,
        "name": record.name,
        "permission": record.permission.value,
        "permission_label": record.permission.label,
        "display_prefix": record.display_prefix,
        "allowed_ips": record.allowed_ips,
        "status": record.status(now),
        "expires_at": iso_resource(record.expires_at) if record.expires_at else None,
        "revoked_at": iso_resource(record.revoked_at) if record.revoked_at else None,
        "rotated_from_id": record.rotated_from_id,
        "created_by": record.created_by,
        "created_at": iso_resource(record.created_at),
        "updated_at": iso_resource(record.updated_at),
        "last_used_at": iso_resource(record.last_used_at) if record.last_used_at else None,
        "last_used_ip": record.last_used_ip,
        "sandbox": record.sandbox,
    }


def _describe(record: ApiKeyRecord) -> str:
    ips = record.allowed_ips or "any address"
    expiry = f", expires {iso_resource(record.expires_at)}" if record.expires_at else ""
    kind = "Sandbox, " if record.sandbox else ""
    return f'{record.id} "{record.name}" ({kind}{record.permission.label}; allowed IPs: {ips}{expiry})'


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


async def _with_database(settings: Settings, work: Callable[[Database], Any]) -> Any:
    db = open_database(settings)
    try:
        now = utcnow()
        await db.migrate(lambda conn: _ensure_defaults(conn, now))
        return await work(db)
    finally:
        await db.close()


def _migrate_schema(settings: Settings) -> None:
    """Bring the schema up to date on an event loop and connection pool of their own: a server or worker then starts
    a new loop, and asyncpg connections belong to the loop that opened them."""
    asyncio.run(_with_database(settings, lambda db: asyncio.sleep(0)))


def _ensure_defaults(conn: Connection, now: Any) -> None:
    defaults.ensure_default_team(conn, now=now)


# -- keys ---------------------------------------------------------------------------------------------------


async def _keys_create(db: Database, args: argparse.Namespace) -> None:
    now = utcnow()
    expires_at = keys_service.expiry_in_days(args.expires_in_days, now)

    def work(conn: Connection) -> keys_service.CreatedKey:
        team_id = teams_service.resolve_team(conn, team_id=args.team)
        return keys_service.create_key(
            conn,
            team_id=team_id,
            name=args.name,
            permission=args.permission,
            allowed_ips=args.allowed_ips,
            expires_at=expires_at,
            created_by=_operator(),
            actor=Actor.operator(),
            now=now,
            sandbox=args.sandbox,
        )

    created = await db.write(work)
    if args.json:
        _print_json({**_key_json(created.record), "key": created.key})
        return
    print(f"Created API key {_describe(created.record)}")
    print(f"Key: {created.key}")
    print("Store it now: it is shown only once and cannot be recovered.")


async def _keys_update(db: Database, args: argparse.Namespace) -> None:
    if args.name is None and args.permission is None and args.allowed_ips is None:
        raise UsageError("nothing to change: give --name, --permission or --allowed-ips")
    record = await db.write(
        lambda conn: keys_service.update_key(
            conn,
            key_id=args.id,
            team_id=None,
            actor=Actor.operator(),
            now=utcnow(),
            name=UNCHANGED if args.name is None else args.name,
            permission=UNCHANGED if args.permission is None else args.permission,
            allowed_ips=UNCHANGED if args.allowed_ips is None else (args.allowed_ips or None),
        )
    )
    if args.json:
        _print_json(_key_json(record))
    else:
        print(f"Updated API key {_describe(record)}")


async def _keys_revoke(db: Database, args: argparse.Namespace) -> None:
    operator = Actor.operator()
    record = await db.write(
        lambda conn: keys_service.revoke_key(conn, key_id=args.id, team_id=None, actor=operator, now=utcnow())
    )
    if args.json:
        _print_json(_key_json(record))
    else:
        print(f"Revoked API key {_describe(record)}")


async def _keys_rotate(db: Database, args: argparse.Namespace) -> None:
    grace = timedelta(hours=args.grace_hours)
    created, old = await db.write(
        lambda conn: keys_service.rotate_key(
            conn,
            key_id=args.id,
            team_id=None,
            grace=grace,
            created_by=_operator(),
            actor=Actor.operator(),
            now=utcnow(),
            expires_in_days=args.expires_in_days,
        )
    )
    if args.json:
        _print_json({**_key_json(created.record), "key": created.key, "previous": _key_json(old)})
        return
    print(f"Created API key {_describe(created.record)}")
    print(f"Key: {created.key}")
    print("Store it now: it is shown only once and cannot be recovered.")
    assert old.expires_at is not None
    print(f"The previous key {old.id} keeps working until {iso_resource(old.expires_at)}.")


async def _keys_list(db: Database, args: argparse.Namespace) -> None:
    records = await db.read(lambda conn: keys_service.list_keys(conn, team_id=args.team))
    if args.json:
        _print_json([_key_json(r) for r in records])
        return
    if not records:
        print("No API keys yet. Create one with: postroom keys create --name NAME")
        return
    now = utcnow()
    rows = [("ID", "NAME", "PREFIX", "PERMISSION", "ALLOWED IPS", "STATUS", "LAST USED")]
    for r in records:
        used = f"{iso_resource(r.last_used_at)} from {r.last_used_ip}" if r.last_used_at else "never"
        rows.append((r.id, r.name, r.display_prefix, r.permission.label, r.allowed_ips or "any", r.status(now), used))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# -- domains, suppressions, send-test -----------------------------------------------------------------------


def _domain_json(domain: Any) -> dict[str, Any]:
    return {
        "domain": domain.domain,
        "team_id": domain.team_id,
        "status": domain.status,
        "can_send": domain.can_send,
        "dkim": {"name": domain.dkim_record_name, "type": "TXT", "value": domain.dkim_public_key},
        "created_at": iso_resource(domain.created_at),
    }


async def _domains(db: Database, args: argparse.Namespace, settings: Settings) -> None:
    from postroom.domains import service as domains_service
    from postroom.domains.tasks import DomainChecks
    from postroom.system.identity import mail_identity_warning

    now = utcnow()
    command = args.domains_command
    identity_warning = mail_identity_warning(settings)
    if identity_warning is not None:  # on stderr, so --json output stays parseable
        print(f"postroom: warning: the DNS records are wrong until this is fixed: {identity_warning}", file=sys.stderr)
    operator = Actor.operator()

    def team(conn: Connection) -> int:
        return teams_service.resolve_team(conn, team_id=args.team)

    if command == "list":
        domains = await db.read(lambda conn: domains_service.list_domains(conn, team_id=args.team))
        if args.json:
            _print_json([_domain_json(d) for d in domains])
            return
        for d in domains:
            warning = "  (DKIM record failing since " + iso_resource(d.warning_since) + ")" if d.warning_since else ""
            withheld = f"  ({d.pending_reason})" if d.pending_reason else ""
            print(f"{d.domain}  team {d.team_id}  {d.status}{warning}{withheld}")
        return
    if command == "add":
        domain = await db.write(
            lambda conn: domains_service.add_domain(
                conn,
                team_id=team(conn),
                name=args.domain,
                approve=args.approve,
                actor=operator,
                now=now,
                settings=settings,
            )
        )
        if args.json:
            _print_json(_domain_json(domain))
            return
        state = "approved for sending" if domain.can_send else "pending: publish the records, then verify"
        print(f"Added {domain.domain} ({state}). DNS records to publish:")
    elif command == "approve":
        domain = await db.write(
            lambda conn: domains_service.approve_domain(
                conn, team_id=team(conn), name=args.domain, actor=operator, now=now
            )
        )
        print(f"{domain.domain} is approved for sending.")
        return
    elif command == "verify":
        team_id = await db.read(team)
        domain, _ = await DomainChecks(db, settings).verify(team_id=team_id, name=args.domain, actor=operator)
        print(
            f"{domain.domain}: {domain.status}, DKIM {domain.dkim_status}, SPF {domain.spf_status}, "
            f"DMARC {domain.dmarc_status}, return path {domain.cname_status}"
        )
    elif command == "rotate-dkim":
        domain = await db.write(
            lambda conn: domains_service.start_rotation(
                conn, team_id=team(conn), name=args.domain, actor=operator, now=now, settings=settings
            )
        )
        print(f"New DKIM key for {domain.domain}: publish {domain.next_dkim_record_name}; it signs once it verifies.")
    else:  # show
        domain = await db.read(lambda conn: domains_service.get_domain(conn, team_id=team(conn), name=args.domain))
        print(f"{domain.domain}: {domain.status}")
    if domain.pending_reason:
        print(f"  {domain.pending_reason}")
    for record in domains_service.expected_records(domain, settings):
        status = f"  [{record['status']}]" if record["status"] else ""
        print(f"  {record['name']}  {record['type']}  {record['value']}{status}")
    if command == "show":
        events = await db.read(
            lambda conn: domains_service.domain_events(conn, team_id=domain.team_id, name=domain.domain)
        )
        for event in events:
            print(f"  {iso_resource(event.occurred_at)}  {event.type}: {event.detail}")


async def _suppressions(db: Database, args: argparse.Namespace) -> None:
    from postroom.emails import service as emails_service

    if args.suppressions_command == "list":
        rows = await db.read(lambda conn: emails_service.list_suppressions(conn, team_id=args.team))
        if args.json:
            _print_json(
                [
                    {"email": r.email, "team_id": r.team_id, "reason": r.reason, "source": r.source,
                     "created_at": iso_resource(r.created_at)}
                    for r in rows
                ]
            )  # fmt: skip
            return
        for r in rows:
            print(f"{r.email}  team {r.team_id}  {r.reason}  {iso_resource(r.created_at)}  {r.source or ''}")
        return

    def remove(conn: Connection) -> bool:
        team_id = teams_service.resolve_team(conn, team_id=args.team)
        return emails_service.unsuppress(conn, team_id=team_id, email=args.email, actor=Actor.operator(), now=utcnow())

    if not await db.write(remove):
        raise NotFound(f"{args.email} is not suppressed")
    print(f"{args.email} removed from the suppression list.")


async def _send_test(db: Database, args: argparse.Namespace, settings: Settings) -> None:
    """Queue one plain-text message through the same path as POST /api/emails (the worker delivers it)."""
    from postroom.emails import service as emails_service
    from postroom.messages.request import parse_send_request

    request = parse_send_request(
        {
            "from": args.sender,
            "to": [args.to],
            "subject": args.subject,
            "text": "This is a test message from Postroom. If you can read it, sending works.",
        }
    )

    def accept(conn: Connection) -> Any:
        team_id = teams_service.resolve_team(conn, team_id=args.team)
        return emails_service.accept(
            conn, team_id=team_id, api_key_id=None, request=request, now=utcnow(), mail_hostname=settings.mail_hostname
        )

    accepted = await db.write(accept)
    print(f"Queued test message {accepted.request_id} to {args.to}; the running server or worker delivers it.")


# -- inbox --------------------------------------------------------------------------------------------------


async def _inbox(db: Database, args: argparse.Namespace) -> None:
    """The local inbox: what sandbox keys sent, as captured."""
    from postroom.inbox import service as inbox_service

    def team(conn: Connection) -> int:
        return teams_service.resolve_team(conn, team_id=args.team)

    if args.inbox_command == "list":
        captures, total = await db.read(lambda conn: inbox_service.list_captures(conn, team_id=team(conn)))
        rows = [
            {
                "id": c.id,
                "request_id": c.request_id,
                "to": c.rcpt_to,
                "from": c.from_email,
                "subject": c.subject,
                "captured_at": iso_resource(c.captured_at),
            }
            for c in captures
        ]
        if args.json:
            _print_json(rows)
            return
        print(f"{total} captured message{'' if total == 1 else 's'}")
        for row in rows:
            print(f"{row['id']}  {row['captured_at']}  {row['from']} -> {row['to']}  {row['subject']}")
        return

    def newest_or_named(conn: Connection) -> inbox_service.CaptureView:
        team_id = team(conn)
        capture_id = args.id
        if capture_id is None:
            newest, _ = inbox_service.list_captures(conn, team_id=team_id)
            if not newest:
                raise inbox_service.CaptureNotFound("The inbox is empty.")
            capture_id = newest[0].id
        return inbox_service.view_capture(conn, team_id=team_id, capture_id=capture_id)

    view = await db.read(newest_or_named)
    if args.json:
        _print_json(
            {
                "id": view.capture.id,
                "request_id": view.capture.request_id,
                "to": view.capture.rcpt_to,
                "subject": view.capture.subject,
                "dkim": {"result": view.dkim.result, "detail": view.dkim.detail},
                "headers": view.headers,
                "text": view.text,
                "html": view.html,
            }
        )
        return
    for name, value in view.headers:
        if name.lower() != "dkim-signature":
            print(f"{name}: {value}")
    print(f"DKIM: {view.dkim.result} ({view.dkim.detail})")
    print()
    print(view.text if view.text is not None else view.html or "")


# -- users --------------------------------------------------------------------------------------------------


async def _users_create_admin(db: Database, args: argparse.Namespace, settings: Settings) -> None:
    """Print a one-time link that makes EMAIL an owner of the team (the first sign-in to the dashboard)."""
    from postroom.dashboard import accounts

    now = utcnow()
    operator = Actor.operator()

    def work(conn: Connection) -> Any:
        team_id = teams_service.resolve_team(conn, team_id=args.team)
        return accounts.create_setup_link(conn, team_id=team_id, email=args.email, actor=operator, now=now)

    invitation, token = await db.write(work)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    base = (args.base_url or f"http://{host if ':' not in host else f'[{host}]'}:{settings.port}").rstrip("/")
    print(f"Setup link for {invitation.email} (owner of team {invitation.team_id}); it works once, until "
          f"{iso_resource(invitation.expires_at)}:")  # fmt: skip
    print(f"{base}/invite/{token}")


# -- audit --------------------------------------------------------------------------------------------------

_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def _since(text: str, now: datetime) -> datetime:
    """``--since``: a duration back from now (``30m``, ``24h``, ``7d``, ``2w``) or an ISO 8601 time (UTC if bare)."""
    text = text.strip()
    unit = _DURATION_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].isdigit() and len(text) <= 12:
        return now - timedelta(seconds=int(text[:-1]) * unit)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--since: {text!r} is neither a duration (30m, 24h, 7d, 2w) nor an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def _audit(db: Database, args: argparse.Namespace) -> int:
    """``audit list``: entries oldest first; ``audit verify``: recompute the hash chain (exit 1 when broken)."""
    from postroom.audit import service as audit

    if args.audit_command == "verify":
        check = await db.read(audit.check_chain)
        if check.first_broken is not None:
            print(
                f"postroom: audit log broken at entry {check.first_broken}: its hash does not follow from its "
                "fields and the entry before it (edited, inserted or removed outside Postroom)",
                file=sys.stderr,
            )
            return 1
        print(f"ok, {check.entries} entries")
        return 0
    since = None if args.since is None else _since(args.since, utcnow())
    entries = await db.read(
        lambda conn: audit.list_entries(conn, team_id=args.team, limit=None, actor_contains=args.actor, since=since)
    )
    entries.reverse()
    if args.json:
        _print_json([audit.entry_json(entry) for entry in entries])
        return 0
    for entry in entries:
        line = audit.entry_json(entry)
        change = (
            f"  {line['old_value'] or '-'} -> {line['new_value'] or '-'}" if entry.old_value or entry.new_value else ""
        )
        print(
            f"{entry.id}  {line['occurred_at']}  {entry.actor}  {entry.actor_ip or '-'}  {entry.action}  "
            f"{entry.target or '-'}{change}"
        )
    return 0


# -- serve / migrate ----------------------------------------------------------------------------------------


def _freeze_startup_heap() -> None:
    """Keep what start-up made (modules, the application, compiled statements) out of the cyclic collector's scans.

    A long-running process holds ~150,000 objects from start-up, types and functions among them, and a full
    collection walks them all: ~90 ms with the interpreter lock held, every few seconds under load, during which no
    request is answered. Frozen, they are skipped (they are still freed by reference counting), and a full
    collection walks only what was made since.
    """
    import gc

    gc.collect()
    gc.freeze()


def _background_work(db: Database, settings: Settings) -> tuple[Any, Callable[[], list[Any]]]:
    """The worker (a dispatcher over the outbox) and the maintenance loop, as coroutine factories."""
    from postroom.delivery.tasks import DeliveryTasks
    from postroom.domains.tasks import DomainChecks
    from postroom.jobs.registry import make_dispatcher
    from postroom.system.maintenance import run_maintenance
    from postroom.webhooks.tasks import WebhookTasks

    holder: dict[str, Any] = {}
    tasks = DeliveryTasks(db, settings, wake=lambda: holder["dispatcher"].wake())
    webhook_tasks = WebhookTasks(db, settings)
    handlers = {**tasks.handlers(), **DomainChecks(db, settings).handlers(), **webhook_tasks.handlers()}
    dispatcher = make_dispatcher(db, settings, handlers)
    holder["dispatcher"] = dispatcher

    async def deliver_forever() -> None:
        try:
            await dispatcher.run_forever()
        finally:
            await tasks.close()
            await webhook_tasks.close()

    return dispatcher, lambda: [deliver_forever(), run_maintenance(db, settings)]


EXIT_DISPATCHER_FAILED = 75
"""Exit status of a ``worker`` or ``serve`` whose dispatcher stopped for good (its database stayed out of reach past
``POSTROOM_WORKER_RECONNECT_TIMEOUT``): EX_TEMPFAIL, for the service manager to restart it."""


def _dispatcher_failure(task: asyncio.Task[Any]) -> str | None:
    """Why the dispatcher's task ended, or None when it was cancelled (a shutdown)."""
    if task.cancelled():
        return None
    error = task.exception()
    return f"{type(error).__name__}: {error}" if error is not None else "it returned"


def _serve(
    settings: Settings,
    *,
    with_worker: bool = True,
    with_smtp: bool = False,
    http_socket: socket.socket | None = None,
    metrics_dir: str | None = None,
    dev: bool = False,
) -> int:
    """HTTP on ``host:port``; ``serve`` runs the worker in this process, ``api`` leaves it to ``postroom worker``.

    ``with_smtp`` adds the SMTP listeners (submission and bounce intake) to the same event loop. One of the
    processes of ``postroom api --processes N`` gets its ``http_socket`` (the database already migrated) and the
    ``metrics_dir`` they all count in. ``dev`` prepares and prints the development sandbox (``system/devmode.py``).
    """
    import uvicorn

    from postroom.app import build_app
    from postroom.observability.logging import configure_logging

    configure_logging(settings.log_level)
    if http_socket is None:
        _migrate_schema(settings)
        http_socket = _listen_socket(settings.host, settings.port)
    if dev:
        _print_dev_setup(settings)
    db = open_database(settings)
    dispatcher, work = _background_work(db, settings) if with_worker else (None, list)
    tasks: list[asyncio.Task[None]] = []

    exit_status = 0

    def dispatcher_ended(task: asyncio.Task[Any]) -> None:
        nonlocal exit_status
        failure = _dispatcher_failure(task)
        if failure is not None and not server.should_exit:
            print(f"Postroom dispatcher stopped ({failure}); exiting", file=sys.stderr, flush=True)
            exit_status = EXIT_DISPATCHER_FAILED
            server.should_exit = True

    async def start_worker() -> None:
        tasks.extend(asyncio.create_task(coroutine) for coroutine in work())
        if tasks:
            tasks[0].add_done_callback(dispatcher_ended)

    smtp_sockets = _smtp_sockets(settings) if with_smtp else {}
    smtp_listeners: list[Any] = []

    async def start_smtp() -> None:
        from postroom.relay.listener import start_listeners

        if smtp_sockets:
            wake = dispatcher.wake if dispatcher is not None else (lambda: None)
            limiter = app.state.rate_limiter  # one window per team for HTTP and SMTP sends
            smtp_listeners.append(await start_listeners(settings, db, smtp_sockets, wake=wake, rate_limiter=limiter))

    async def freeze_heap() -> None:
        from postroom.observability.metrics import record_gc_freeze

        _freeze_startup_heap()
        record_gc_freeze()  # this process serves /metrics

    async def stop() -> None:
        for listener in smtp_listeners:  # refuse new mail first; what was acknowledged is committed
            await listener.close()
        if dispatcher is not None:  # stop claiming, finish in-flight items, release the rest
            await dispatcher.shutdown(settings.worker_shutdown_seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # in-flight deliveries finish and are recorded
        await db.close()

    app = build_app(
        settings,
        db,
        on_startup=[start_worker, start_smtp, freeze_heap],
        on_shutdown=[stop],
        wake_worker=None if dispatcher is None else dispatcher.wake,
        metrics_dir=metrics_dir,
        dispatcher=dispatcher,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=False,  # only postroom.auth.client_ip reads X-Forwarded-For, and only from trusted proxies
        access_log=False,
        log_config=None,
        server_header=False,
        lifespan="on",
    )
    if metrics_dir is None:  # the processes of ``api --processes N`` are announced once, by their parent
        _print_listening(settings, with_worker=with_worker)
        _warn_about_mail_identity(settings)
    if smtp_sockets:
        _print_smtp_ports(settings, smtp_sockets)
    server = uvicorn.Server(config)
    server.run(sockets=[http_socket])
    return exit_status


def _warn_about_mail_identity(settings: Settings) -> None:
    """One warning line in the log at start when mail would go out under a name nobody can check."""
    import logging

    from postroom.system.identity import mail_identity_warning

    warning = mail_identity_warning(settings)
    if warning is not None:
        logging.getLogger("postroom.config").warning(warning)


def _print_dev_setup(settings: Settings) -> None:
    from postroom.system import devmode

    setup = asyncio.run(_with_database(settings, lambda db: devmode.prepare(db, settings)))
    base = f"http://{settings.host}:{settings.port}"
    state = "created" if setup.created else "saved"
    print(
        "Development mode: mail sent with the sandbox key is captured in the local inbox, never delivered.\n"
        f"Sandbox key ({state} in {setup.key_file}): {setup.key}\n"
        f"Sending domain: {setup.domain} (approved)\n"
        f"Inbox: {base}/inbox (dashboard) or: postroom inbox list",
        flush=True,
    )


def _print_listening(settings: Settings, *, with_worker: bool, processes: int = 1) -> None:
    print(
        f"Postroom {__version__} listening on http://{settings.host}:{settings.port} "
        f"(API at http://{settings.host}:{settings.port}/api"
        f"{f'; {processes} processes' if processes > 1 else ''}"
        f"{'' if with_worker else '; no worker in this process: run postroom worker'})",
        file=sys.stderr,
        flush=True,
    )


def _api(settings: Settings) -> int:
    """``postroom api``: the HTTP API without a worker, in ``settings.api_processes`` processes on one port."""
    if settings.api_processes == 1:
        return _serve(settings, with_worker=False)
    import os
    import shutil

    from postroom.observability.logging import configure_logging
    from postroom.system.supervisor import reuse_port_sockets, run_children

    # Each process counts its requests in files of one directory and ``/metrics`` adds them all up.
    # prometheus_client picks its multiprocess mode when it is imported, which the children do after the fork.
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the API processes were started")
    configure_logging(settings.log_level)
    _migrate_schema(settings)  # once, before any child starts
    try:
        sockets = reuse_port_sockets(settings.host, settings.port, settings.api_processes)
    except OSError as exc:
        raise UsageError(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}") from None
    # The port is this installation's alone now, so whatever a parent killed without cleaning up left here is stale.
    metrics_path = settings.data_dir / f"api-metrics-{settings.port}"
    shutil.rmtree(metrics_path, ignore_errors=True)
    metrics_path.mkdir(mode=0o700, parents=True)
    metrics_dir = str(metrics_path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    def mark_dead(pid: int) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

    _print_listening(settings, with_worker=False, processes=settings.api_processes)
    _warn_about_mail_identity(settings)
    try:
        return run_children(
            sockets,
            lambda sock: _serve(settings, with_worker=False, http_socket=sock, metrics_dir=metrics_dir),
            on_exit=mark_dead,
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _smtp_sockets(settings: Settings) -> dict[str, socket.socket]:
    """Bind every enabled SMTP listener now, so a port in use stops the command before anything starts."""
    from postroom.relay.listener import ListenerPorts

    ports = ListenerPorts.from_settings(settings).enabled()
    return {name: _listen_socket(settings.smtp_listen_host, port) for name, port in ports.items()}


def _print_smtp_ports(settings: Settings, sockets: dict[str, socket.socket]) -> None:
    labels = {"submission": "submission (STARTTLS)", "submissions": "submission (TLS)", "bounce": "bounce intake"}
    listening = ", ".join(f"{labels[name]} on {sock.getsockname()[1]}" for name, sock in sockets.items())
    print(f"Postroom SMTP on {settings.smtp_listen_host}: {listening}", file=sys.stderr, flush=True)


def _smtp(settings: Settings) -> int:
    """The SMTP listeners alone, until SIGTERM or SIGINT (deliveries are left to ``serve`` or ``worker``)."""
    import signal

    from postroom.observability.logging import configure_logging
    from postroom.relay.listener import start_listeners

    configure_logging(settings.log_level)
    _migrate_schema(settings)
    sockets = _smtp_sockets(settings)
    if not sockets:
        raise UsageError("every SMTP listener is off (POSTROOM_SMTP_PORT, POSTROOM_SMTPS_PORT, POSTROOM_BOUNCE_PORT)")

    async def run() -> None:
        from postroom.auth.ratelimit import RateLimiter

        db = open_database(settings)
        limiter = RateLimiter.from_settings(settings)
        listeners = await start_listeners(settings, db, sockets, rate_limiter=limiter)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        _print_smtp_ports(settings, sockets)
        _warn_about_mail_identity(settings)
        _freeze_startup_heap()
        await stopping.wait()
        await listeners.close()
        await limiter.close()
        await db.close()

    asyncio.run(run())
    return 0


def _worker(settings: Settings) -> int:
    """Deliver until SIGTERM or SIGINT; then stop claiming, let in-flight deliveries finish for up to
    ``POSTROOM_WORKER_SHUTDOWN_TIMEOUT`` seconds, release what is still leased, and exit."""
    import signal

    from postroom.observability.logging import configure_logging

    configure_logging(settings.log_level)
    _migrate_schema(settings)

    async def run() -> int:
        db = open_database(settings)
        dispatcher, work = _background_work(db, settings)
        tasks = [asyncio.create_task(coroutine) for coroutine in work()]
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        _freeze_startup_heap()
        print(f"Postroom {__version__} worker started", file=sys.stderr, flush=True)
        _warn_about_mail_identity(settings)
        signalled = asyncio.create_task(stopping.wait())
        await asyncio.wait({signalled, tasks[0]}, return_when=asyncio.FIRST_COMPLETED)
        failure = None if signalled.done() else _dispatcher_failure(tasks[0])
        signalled.cancel()
        if failure is not None:
            print(f"Postroom worker: dispatcher stopped ({failure}); exiting", file=sys.stderr, flush=True)
        released = await dispatcher.shutdown(settings.worker_shutdown_seconds if failure is None else 0)
        print(f"Postroom worker stopping; {released} unfinished work item(s) released", file=sys.stderr, flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):  # a database that is gone cannot be closed cleanly
            await db.close()
        return 0 if failure is None else EXIT_DISPATCHER_FAILED

    return asyncio.run(run())


def _listen_socket(host: str, port: int) -> socket.socket:
    """The listening socket of one process (``supervisor.listening_socket``); a port in use is a usage error."""
    from postroom.system.supervisor import listening_socket

    try:
        return listening_socket(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _migrate(settings: Settings) -> int:
    _migrate_schema(settings)
    print("Database schema is up to date.")
    return 0


# -- parser -------------------------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--data-dir", default=argparse.SUPPRESS, help="data directory (POSTROOM_DATA_DIR)")
    common.add_argument("--database-url", default=argparse.SUPPRESS, help="postgresql://… (POSTROOM_DATABASE_URL)")

    parser = _Parser(
        prog="postroom", description="Self-hosted transactional email with the Lettr API.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"postroom {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", parents=[common], help="run the API, dashboard and worker")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_PORT, default=None, help="port to listen on (default 8025)")
    serve.add_argument("--no-smtp", action="store_true", help="run without the SMTP listeners")
    serve.add_argument(
        "--dev", action="store_true", help="local development: a sandbox key and the example.test domain"
    )
    smtp = commands.add_parser("smtp", parents=[common], help="run the SMTP submission and bounce listeners only")
    smtp.add_argument("--host", dest="smtp_host", default=None, help="address to listen on (POSTROOM_SMTP_HOST)")
    api = commands.add_parser("api", parents=[common], help="run the API only (scale-out: workers run apart)")
    api.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    api.add_argument("--port", type=_PORT, default=None, help="port to listen on (default 8025)")
    api.add_argument(
        "--processes",
        type=_number(int, 1, 64),
        default=None,
        help="processes answering on the port, about one per core (default 1)",
    )
    commands.add_parser("migrate", parents=[common], help="bring the database schema up to date")
    commands.add_parser("worker", parents=[common], help="deliver queued mail (as many processes as you like)")

    domains = commands.add_parser("domains", parents=[common], help="manage sending domains")
    domain_commands = domains.add_subparsers(dest="domains_command", required=True, parser_class=_Parser)
    add_domain = domain_commands.add_parser("add", parents=[common], help="register a sending domain")
    add_domain.add_argument("domain")
    add_domain.add_argument("--approve", action="store_true", help="approve it for sending at once")
    add_domain.add_argument("--team", type=_TEAM, default=None)
    add_domain.add_argument("--json", action="store_true")
    approve_domain = domain_commands.add_parser("approve", parents=[common], help="approve a domain for sending")
    approve_domain.add_argument("domain")
    approve_domain.add_argument("--team", type=_TEAM, default=None)
    list_domains = domain_commands.add_parser("list", parents=[common], help="list sending domains")
    list_domains.add_argument("--team", type=_TEAM, default=None)
    list_domains.add_argument("--json", action="store_true")
    for name, text in (
        ("verify", "check the domain's DNS records now (approves it once DKIM verifies)"),
        ("rotate-dkim", "make a new DKIM key; it replaces the current one once its record verifies"),
        ("show", "the records to publish, their last status, and the domain's recent events"),
    ):
        sub = domain_commands.add_parser(name, parents=[common], help=text)
        sub.add_argument("domain")
        sub.add_argument("--team", type=_TEAM, default=None)

    suppressions = commands.add_parser("suppressions", parents=[common], help="the suppression list")
    suppression_commands = suppressions.add_subparsers(dest="suppressions_command", required=True, parser_class=_Parser)
    list_suppressions = suppression_commands.add_parser("list", parents=[common], help="list suppressed addresses")
    list_suppressions.add_argument("--team", type=_TEAM, default=None)
    list_suppressions.add_argument("--json", action="store_true")
    remove_suppression = suppression_commands.add_parser("remove", parents=[common], help="allow an address again")
    remove_suppression.add_argument("email")
    remove_suppression.add_argument("--team", type=_TEAM, default=None)

    send_test = commands.add_parser("send-test", parents=[common], help="queue one test message")
    send_test.add_argument("--from", dest="sender", required=True, help="an address at an approved domain")
    send_test.add_argument("--to", required=True)
    send_test.add_argument("--subject", default="Postroom test message")
    send_test.add_argument("--team", type=_TEAM, default=None)

    keys = commands.add_parser("keys", parents=[common], help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)

    create = key_commands.add_parser("create", parents=[common], help="create a key (shown once)")
    create.add_argument("--name", required=True)
    create.add_argument("--permission", choices=["full", "sending"], default="full")
    create.add_argument("--allowed-ips", default=None, help='e.g. "203.0.113.50, 198.51.100.0/24"')
    create.add_argument("--expires-in-days", type=_number(int, 1, keys_service.MAX_EXPIRY_DAYS), default=None)
    create.add_argument("--team", type=_TEAM, default=None, help="team id (default: the default team)")
    create.add_argument(
        "--sandbox", action="store_true", help="a sandbox key (lttr_sandbox_…): its mail goes to the local inbox"
    )
    create.add_argument("--json", action="store_true")

    update = key_commands.add_parser("update", parents=[common], help="change name, permission or allowlist")
    update.add_argument("id")
    update.add_argument("--name", default=None)
    update.add_argument("--permission", choices=["full", "sending"], default=None)
    update.add_argument("--allowed-ips", default=None, help='an empty string "" clears the list')
    update.add_argument("--json", action="store_true")

    revoke = key_commands.add_parser("revoke", parents=[common], help="revoke a key at once")
    revoke.add_argument("id")
    revoke.add_argument("--json", action="store_true")

    rotate = key_commands.add_parser("rotate", parents=[common], help="issue a successor key")
    rotate.add_argument("id")
    rotate.add_argument(
        "--grace-hours",
        type=_number(float, 0, 720),
        default=24.0,
        help="how long the old key keeps working (default 24)",
    )
    rotate.add_argument(
        "--expires-in-days", type=int, default=None, help="the new key's lifetime (default: the old key's expiry)"
    )
    rotate.add_argument("--json", action="store_true")

    listing = key_commands.add_parser("list", parents=[common], help="list keys (never their secrets)")
    listing.add_argument("--team", type=_TEAM, default=None)
    listing.add_argument("--json", action="store_true")

    audit_log = commands.add_parser("audit", parents=[common], help="the audit log of every change")
    audit_commands = audit_log.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    audit_list = audit_commands.add_parser("list", parents=[common], help="list audit entries, oldest first")
    audit_list.add_argument("--since", default=None, help="a duration (30m, 24h, 7d) or an ISO 8601 time")
    audit_list.add_argument("--actor", default=None, help="only entries whose actor contains this text")
    audit_list.add_argument("--team", type=int, default=None, help="only this team's entries")
    audit_list.add_argument("--json", action="store_true")
    audit_commands.add_parser("verify", parents=[common], help="check the hash chain (exit 1 when broken)")

    inbox = commands.add_parser("inbox", parents=[common], help="the local inbox of sandbox mail")
    inbox_commands = inbox.add_subparsers(dest="inbox_command", required=True, parser_class=_Parser)
    list_inbox = inbox_commands.add_parser("list", parents=[common], help="captured messages, newest first")
    list_inbox.add_argument("--team", type=_TEAM, default=None)
    list_inbox.add_argument("--json", action="store_true")
    show_inbox = inbox_commands.add_parser("show", parents=[common], help="one captured message (default: the newest)")
    show_inbox.add_argument("id", nargs="?", default=None)
    show_inbox.add_argument("--team", type=_TEAM, default=None)
    show_inbox.add_argument("--json", action="store_true")

    users = commands.add_parser("users", parents=[common], help="dashboard accounts")
    user_commands = users.add_subparsers(dest="users_command", required=True, parser_class=_Parser)
    create_admin = user_commands.add_parser(
        "create-admin", parents=[common], help="print a one-time setup link that makes EMAIL a team owner"
    )
    create_admin.add_argument("email")
    create_admin.add_argument("--team", type=_TEAM, default=None, help="team id (default: the default team)")
    create_admin.add_argument(
        "--base-url", default=None, help="the dashboard's public URL, e.g. https://postroom.example.com"
    )
    return parser


_KEY_COMMANDS = {
    "create": _keys_create,
    "update": _keys_update,
    "revoke": _keys_revoke,
    "rotate": _keys_rotate,
    "list": _keys_list,
}


def _fail(status: int, message: str) -> int:
    print(f"postroom: error: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        settings = load_settings(
            data_dir=None if getattr(args, "data_dir", None) is None else Path(args.data_dir),
            database_url=getattr(args, "database_url", None),
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            smtp_host=getattr(args, "smtp_host", None),
            api_processes=getattr(args, "processes", None),
        )
        if args.command == "serve":
            return _serve(settings, with_smtp=not args.no_smtp, dev=args.dev)
        if args.command == "smtp":
            return _smtp(settings)
        if args.command == "api":
            return _api(settings)
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "worker":
            return _worker(settings)
        if args.command == "domains":
            asyncio.run(_with_database(settings, lambda db: _domains(db, args, settings)))
        elif args.command == "suppressions":
            asyncio.run(_with_database(settings, lambda db: _suppressions(db, args)))
        elif args.command == "send-test":
            asyncio.run(_with_database(settings, lambda db: _send_test(db, args, settings)))
        elif args.command == "audit":
            return int(asyncio.run(_with_database(settings, lambda db: _audit(db, args))))
        elif args.command == "inbox":
            asyncio.run(_with_database(settings, lambda db: _inbox(db, args)))
        elif args.command == "users":
            asyncio.run(_with_database(settings, lambda db: _users_create_admin(db, args, settings)))
        else:
            handler = _KEY_COMMANDS[args.keys_command]
            asyncio.run(_with_database(settings, lambda db: handler(db, args)))
        return 0
    except ConfigError as exc:
        return _fail(2, str(exc))
    except UsageError as exc:
        return _fail(2, str(exc))
    except ValidationFailed as exc:
        details = "; ".join(f"{field.replace('_', '-')}: {' '.join(msgs)}" for field, msgs in exc.errors.items())
        return _fail(2, details)
    except NotFound as exc:
        subject = getattr(args, "id", None)
        return _fail(1, f"{exc.message} ({subject})" if subject else exc.message)
    except PostroomError as exc:
        return _fail(1, exc.message)
    except KeyboardInterrupt:
        return 130
