"""What the logs page shows: sending volume, failed API authentications, new keys, keys turning up at new
addresses, and the alerts that point at a leaked key or a compromised sender.

Alerts:

- **Volume spike**: the last hour's sends exceed three times the hourly average of the seven days before it, and
  at least ``VOLUME_ALERT_FLOOR`` messages (so a quiet team's first busy hour is not an alarm).
- **Revoked or expired key still in use**: one such key tried ``DEAD_KEY_ALERT_ATTEMPTS`` times or more within the
  last hour, the sign of a leaked or forgotten key still deployed somewhere.

Alerts are computed when the page is read, from the same rows it lists, so they need no job and no state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row

from postroom.apikeys.service import ApiKeyRecord
from postroom.auth.scopes import Permission
from postroom.dashboard import queries

VOLUME_ALERT_FACTOR = 3
VOLUME_ALERT_FLOOR = 200
DEAD_KEY_ALERT_ATTEMPTS = 5
DEAD_KEY_WINDOW = timedelta(hours=1)
CHART_HOURS = 48
BASELINE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class VolumePoint:
    hour: datetime
    count: int


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def volume(conn: Connection, *, team_id: int, now: datetime, hours: int = CHART_HOURS) -> list[VolumePoint]:
    """Messages accepted per hour over the last ``hours`` hours, oldest first, the current hour last."""
    current = _hour(now)
    start = current - timedelta(hours=hours - 1)
    counts = queries.hourly_message_counts(conn, team_id, start)
    return [VolumePoint(hour=h, count=counts.get(h, 0)) for h in (start + timedelta(hours=i) for i in range(hours))]


def volume_alert(conn: Connection, *, team_id: int, now: datetime, floor: int = VOLUME_ALERT_FLOOR) -> Alert | None:
    """A spike alert when the last 60 minutes exceed 3× the hourly mean of the 7 days before them (and ``floor``)."""
    counts = queries.hourly_message_counts(conn, team_id, _hour(now - BASELINE - timedelta(hours=1)))
    last_hour_start = now - timedelta(hours=1)
    # Hour buckets are coarse; the "last hour" is the current and previous bucket that overlap it, weighted.
    current, previous = _hour(now), _hour(now) - timedelta(hours=1)
    overlap = (current - last_hour_start).total_seconds() / 3600
    recent = counts.get(current, 0) + counts.get(previous, 0) * overlap
    baseline_hours = [h for h in counts if h < previous and h >= _hour(previous - BASELINE)]
    baseline_total = sum(counts[h] for h in baseline_hours)
    mean = baseline_total / (BASELINE.total_seconds() / 3600)
    if recent >= floor and recent > VOLUME_ALERT_FACTOR * mean:
        return Alert(
            kind="volume",
            message=(
                f"Sending volume spike: about {round(recent)} messages in the last hour, more than "
                f"{VOLUME_ALERT_FACTOR}× the 7-day hourly average ({mean:.1f})."
            ),
        )
    return None


def dead_key_alerts(conn: Connection, *, team_id: int, now: datetime) -> list[Alert]:
    alerts = []
    for row in queries.dead_key_attempts(conn, team_id, now - DEAD_KEY_WINDOW):
        if int(row.attempts) >= DEAD_KEY_ALERT_ATTEMPTS:
            alerts.append(
                Alert(
                    kind="dead_key",
                    message=(
                        f"The revoked or expired key {row.key_prefix}… was tried {row.attempts} times in the last "
                        "hour. Something still uses it: find and update that client, and consider the key leaked."
                    ),
                )
            )
    return alerts


def alerts(conn: Connection, *, team_id: int, now: datetime) -> list[Alert]:
    found = dead_key_alerts(conn, team_id=team_id, now=now)
    spike = volume_alert(conn, team_id=team_id, now=now)
    return ([spike] if spike else []) + found


def failed_authentications(
    conn: Connection, *, team_id: int, include_unattributed: bool, limit: int = 50
) -> list[Row[Any]]:
    """Newest first: time, IP, key prefix, reason, path. Unattributed failures (no known key) only when asked."""
    return list(queries.auth_failures_for(conn, team_id, include_unattributed=include_unattributed, limit=limit))


@dataclass(frozen=True, slots=True)
class NewKey:
    created_at: datetime
    name: str
    display_prefix: str
    created_permission: Permission
    permission: Permission
    created_by: str
    status: str
    """``active``, ``revoked``, ``expired`` or ``rotated`` (a successor was issued), now."""


def new_keys(conn: Connection, *, team_id: int, now: datetime, days: int = 7) -> list[NewKey]:
    """The keys created in the last ``days`` days: with what permission they were made, and what they are now."""
    listing = []
    for row in queries.new_keys(conn, team_id, now - timedelta(days=days)):
        record = ApiKeyRecord.from_row(row)
        status = record.status(now)
        if status != "revoked" and row.has_successor:
            status = "rotated"
        listing.append(
            NewKey(
                created_at=record.created_at,
                name=record.name,
                display_prefix=record.display_prefix,
                created_permission=Permission(row.created_permission or record.permission),
                permission=record.permission,
                created_by=record.created_by,
                status=status,
            )
        )
    return listing


def keys_at_new_addresses(conn: Connection, *, team_id: int, now: datetime, days: int = 7) -> list[Row[Any]]:
    """Each key's first request from an address it had not used before, in the last ``days`` days."""
    return list(queries.key_ip_sightings(conn, team_id, now - timedelta(days=days), 50))


def chart_svg(points: list[VolumePoint], *, width: int = 720, height: int = 160) -> str:
    """The volume as an inline SVG bar chart (presentation attributes only, so the CSP needs no inline styles)."""
    if not points:
        return ""
    peak = max(p.count for p in points) or 1
    left, bottom, top = 36, 20, 8
    plot_w, plot_h = width - left - 4, height - bottom - top
    bar = plot_w / len(points)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" class="chart" preserveAspectRatio="none" '
        f'aria-label="Messages accepted per hour, last {len(points)} hours">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" stroke="#999" />',
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11" fill="#555">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11" fill="#555">0</text>',
    ]
    for i, point in enumerate(points):
        h = plot_h * point.count / peak
        x = left + i * bar
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#3867d6"><title>{point.hour:%Y-%m-%d %H:00} UTC: {point.count}</title></rect>'
        )
        if i % 12 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="{height - 5}" font-size="10" fill="#555">{point.hour:%d %b %H:00}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
