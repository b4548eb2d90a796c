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


def zone_problem(name: str) -> str | None:
    """Why `name` is not a timezone (None when it is, or when there is no tz database to ask)."""
    try:
        ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError, TypeError):  # no tz database: display_zone falls back
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return f"unknown timezone {name!r} (an IANA name such as Asia/Shanghai or UTC)"
    return None


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


def email_date(value: datetime, settings=None) -> str:
    """An email's Date header in the display timezone (`Sat, 05 Dec 2026 18:42:00 +0800`): the
    same instant, shown the way its reader's mail client would show it anyway."""
    from email.utils import format_datetime

    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return format_datetime(value.astimezone(display_zone(settings)))
