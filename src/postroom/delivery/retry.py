"""When to try a temporarily failing recipient again (Postfix's ladder: 5 min doubling to ~67 min, ±10 %).

RFC 5321 §4.5.4.1 asks for configurable retry intervals and a give-up time of days; both come from settings.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta


def next_attempt(*, attempts: int, now: datetime, base_seconds: int, max_seconds: int) -> datetime:
    """The time of the next try after ``attempts`` failed ones (1 = the first attempt just failed)."""
    delay = min(base_seconds * 2 ** max(0, attempts - 1), max_seconds)
    jitter = delay * random.uniform(-0.1, 0.1)  # noqa: S311 - spreading load, not a secret
    return now + timedelta(seconds=max(1.0, delay + jitter))


def expired(*, created_at: datetime, now: datetime, lifetime_seconds: int) -> bool:
    """Whether a message has been queued longer than the delivery lifetime."""
    return now - created_at >= timedelta(seconds=lifetime_seconds)
