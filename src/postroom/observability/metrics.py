"""Prometheus metrics, served at ``/metrics``."""

from __future__ import annotations

import gc

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("postroom_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "postroom_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
AUTH_REJECTIONS = Counter("postroom_auth_rejections_total", "Requests refused by the API guard", ["reason"])
GC_FROZEN = Gauge(
    "postroom_gc_frozen_objects",
    "Objects from start-up kept out of the cyclic garbage collector's scans (0 until start-up has finished)",
    multiprocess_mode="livemin",  # of several API processes, the one that has frozen least
)


def record_gc_freeze() -> None:
    """Set ``GC_FROZEN`` once start-up has frozen its heap (a value, not a callback: several processes report it
    through files, which a callback never writes)."""
    GC_FROZEN.set(gc.get_freeze_count())


DISPATCHER_CONNECTED = Gauge(
    "postroom_dispatcher_connected", "1 while this process's dispatcher reaches its database, else 0"
)
DISPATCHER_LAST_CLAIM = Gauge(
    "postroom_dispatcher_last_claim_timestamp_seconds", "When this process's dispatcher last claimed a work item"
)
OUTBOX_BACKLOG = Gauge(
    "postroom_outbox_backlog", "Queued work items that are due now (-1: the database did not answer)"
)
OUTBOX_OLDEST_DUE_AGE = Gauge(
    "postroom_outbox_oldest_due_age_seconds",
    "How long the oldest due work item has waited (-1: the database did not answer)",
)


def record_dispatcher(
    *, connected: bool, last_claim: float | None, backlog: int | None, oldest_due_age: float | None
) -> None:
    """Set the dispatcher gauges (at each scrape of a process that runs one)."""
    DISPATCHER_CONNECTED.set(1 if connected else 0)
    DISPATCHER_LAST_CLAIM.set(0 if last_claim is None else last_claim)
    OUTBOX_BACKLOG.set(-1 if backlog is None else backlog)
    OUTBOX_OLDEST_DUE_AGE.set(-1 if oldest_due_age is None else oldest_due_age)
