"""Times for people: one display timezone (setting `timezone`, default Asia/Shanghai), minutes
precision, one format. The store keeps UTC ISO strings; only what a person reads is converted."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # pragma: no cover - Python < 3.9
    ZoneInfo = None

_FALLBACK = timezone(timedelta(hours=8), "UTC+8")  # Asia/Shanghai has had no DST since 1991


def display_zone(settings=None):
    name = getattr(settings, "timezone", "") or "Asia/Shanghai"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):  # no tz database in a slim image
        return _FALLBACK


def local_minutes(value, settings=None) -> str:
    """`2026-12-05 18:42` in the display timezone; '' for nothing, the input for an unreadable one."""
    if not value:
        return ""
    try:
        dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(display_zone(settings)).strftime("%Y-%m-%d %H:%M")
