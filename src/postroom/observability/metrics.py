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
