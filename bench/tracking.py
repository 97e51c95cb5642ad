"""Requests per second of the click redirect (``GET /t/c/{token}``), against a bare Starlette endpoint.

Both applications are called in-process over ASGI (no sockets, so only the frameworks and our code are measured),
by ``--concurrency`` coroutines that each send one request after another for ``--seconds``, in interleaved rounds
(postroom, baseline, postroom, …; ``--rounds``, default 3), and the medians of the rounds are compared:

- postroom (durable, the default): the application ``postroom serve`` runs (``build_app``), on a migrated database
  with one message and one recipient, every request with a valid click token: the per-IP rate-limit count (raised
  so that it counts every request and refuses none), the token check, the unit of work that records the ``click``
  event (the recipient's row, the event, the webhook fan-out) committed before the 302 is sent;
- postroom (write-behind, ``POSTROOM_TRACKING_WRITE_BEHIND=1``): the same, but the 302 goes out as soon as the
  token checks and the events are written behind it, many to a transaction;
- baseline: the issue's "bare endpoint doing the same token check": a Starlette route that checks the same token
  with the same function (``tracking.rewriting.read_click``) and answers the same 302, with no database.

Each caller comes from its own client address (clicks come from many people; all from one address would measure
one rate-limit row's lock instead). Every answer must be a 302 to the signed URL, and after each postroom round
(and its background writes) the click events in the database must equal the 302s it answered. Target:
postroom/baseline >= 0.7x. Runs on the embedded SQLite database, and on PostgreSQL too when
``POSTROOM_TEST_POSTGRES_URL`` names an admin connection.

    python bench/tracking.py [--seconds 3] [--concurrency 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from postroom.app import build_app
from postroom.audit.service import Actor
from postroom.config import Settings, load_settings
from postroom.core.clock import utcnow
from postroom.db.engine import Database, open_database
from postroom.domains import service as domains_service
from postroom.emails import service as emails_service
from postroom.messages.request import SendRequest
from postroom.models import email_events, recipients
from postroom.system import defaults
from postroom.teams import service as teams_service
from postroom.tracking import rewriting

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _support import asgi_get, run_admin_sql  # noqa: E402

COUNTED_NEVER_REFUSED = {"POSTROOM_TRACKING_RATE_LIMIT": "100000000/second"}
TARGET_URL = "https://example.com/offer?id=7"
AGENT = [(b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36")]


def baseline_app(secret: bytes) -> Starlette:
    async def click(request: Request) -> Response:
        found = rewriting.read_click(secret, request.path_params["token"])
        if found is None:
            return PlainTextResponse("This link is not valid.\n", status_code=404)
        return RedirectResponse(found[1], status_code=302, headers={"Cache-Control": "no-store"})

    return Starlette(routes=[Route("/t/c/{token}", click)])


async def rate(app: Any, path: str, seconds: float, concurrency: int) -> tuple[float, int]:
    """Requests per second over ``seconds`` with ``concurrency`` callers; raises unless every answer is the 302."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller(n: int) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            status, headers = await asgi_get(app, path, AGENT, client=f"198.51.100.{n + 1}")
            if status != 302 or headers.get(b"location") != TARGET_URL.encode():
                raise SystemExit(f"unexpected answer {status} {headers}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(concurrency)))
    return done / (time.perf_counter() - started), done


async def _message(db: Database, settings: Settings) -> int:
    """A team, an approved domain, and one accepted message; its recipient's id."""
    now = utcnow()
    await db.migrate(lambda conn: None if defaults.ensure_default_team(conn, now=now) else None)
    team_id = await db.read(lambda conn: teams_service.resolve_team(conn, team_id=None))

    def accept(conn: Any) -> str:
        domains_service.add_domain(
            conn,
            team_id=team_id,
            name="bench.test",
            approve=True,
            actor=Actor(name="bench"),
            now=now,
            settings=settings,
        )
        request = SendRequest(from_email="news@bench.test", to=("reader@example.test",), subject="s", html="<p>x</p>")
        return emails_service.accept(
            conn, team_id=team_id, api_key_id=None, request=request, now=now, mail_hostname="bench.test"
        ).message_id

    message_id = await db.write(accept)
    return int(
        await db.read(
            lambda conn: conn.execute(select(recipients.c.id).where(recipients.c.message_id == message_id)).scalar_one()
        )
    )


async def measure(settings: Settings, label: str, seconds: float, concurrency: int, rounds: int) -> None:
    db = open_database(settings)
    recipient_id = await _message(db, settings)
    secret = settings.server_secret
    path = "/t/c/" + rewriting.click_url("", secret, recipient_id, TARGET_URL).rsplit("/", 1)[1]
    apps = {
        "durable": build_app(settings, db),
        "write-behind": build_app(dataclasses.replace(settings, tracking_write_behind=True), db),
        "baseline": baseline_app(secret),
    }

    async def clicks() -> int:
        query = select(func.count()).select_from(email_events).where(email_events.c.type == "click")
        return int(await db.read(lambda conn: conn.execute(query).scalar_one()))

    async def settle(app: Any) -> None:
        """Wait for the events an application still writes behind its answers."""
        recorder = getattr(getattr(app, "state", None), "tracking_recorder", None)
        if recorder is not None:
            await recorder.drain()

    for app in apps.values():  # warm-up, not counted
        await rate(app, path, 0.5, concurrency)
        await settle(app)
    rates: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(rounds):
        for name, app in apps.items():
            before = await clicks()
            per_second, answered = await rate(app, path, seconds, concurrency)
            await settle(app)
            recorded = await clicks() - before
            if name != "baseline" and recorded != answered:
                raise SystemExit(f"{label} {name}: {answered} redirects answered but {recorded} clicks recorded")
            rates[name].append(per_second)
    bare = statistics.median(rates["baseline"])
    for name, measured in rates.items():
        median = statistics.median(measured)
        verdict = (
            ""
            if name == "baseline"
            else f" | ratio {median / bare:4.2f}x, target >= 0.7x: "
            + ("OK" if median / bare >= 0.7 else "UNDER TARGET")
        )
        rounds_text = ", ".join(f"{r:.0f}" for r in measured)
        print(f"{label:<10} {name:<12} {median:8.0f} req/s (rounds {rounds_text}){verdict}")
    for app in apps.values():
        state = getattr(app, "state", None)
        if state is not None and hasattr(state, "rate_limiter"):
            await state.rate_limiter.close()
    await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.rounds} rounds of {args.seconds:g} s per side, {args.concurrency} concurrent callers, in-process ASGI"
    )

    def run(env: dict[str, str], label: str) -> None:
        settings = load_settings({**env, **COUNTED_NEVER_REFUSED})
        asyncio.run(measure(settings, label, args.seconds, args.concurrency, args.rounds))

    with tempfile.TemporaryDirectory() as tmp:
        run({"POSTROOM_DATA_DIR": tmp}, "sqlite")
    admin = os.environ.get("POSTROOM_TEST_POSTGRES_URL")
    if admin:
        name = f"postroom_bench_{secrets.token_hex(4)}"
        run_admin_sql(admin, f'CREATE DATABASE "{name}"')
        try:
            with tempfile.TemporaryDirectory() as tmp:  # the server secret goes to the data directory
                run(
                    {"POSTROOM_DATABASE_URL": admin.rsplit("/", 1)[0] + "/" + name, "POSTROOM_DATA_DIR": tmp},
                    "postgresql",
                )
        finally:
            run_admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
