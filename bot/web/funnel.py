"""The appeal funnel on /stats, drawn on the server as inline SVG (no script): one row per step
with its count, its share of the step before and the drop-off, and the route's items, each with how
many reached it, gave it and stopped there. The drawings are 360 units wide and scale up: at a
phone's width their text is the page's size. The numbers: bot/stats/funnel.py."""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from html import escape

from markupsafe import Markup

from bot.stats.funnel import STEP_NAMES, PeriodError, day_start, item_label
from bot.timefmt import display_zone

WIDTH, BAR_H, ROW_H = 360, 14, 42
PERIODS = (("7", "近 7 天"), ("30", "近 30 天"), ("90", "近 90 天"), ("all", "全部"))
DEFAULT_DAYS = "30"


def period(params, settings, now: datetime | None = None) -> dict:
    """The page's period from its query: `days` (7, 30, 90, all) or `since`/`until` (YYYY-MM-DD,
    days in the display timezone). An unreadable date is said so and the default is used."""
    now = now or datetime.now(timezone.utc)
    since_text, until_text = params.get("since", "").strip(), params.get("until", "").strip()
    error = ""
    if since_text or until_text:
        try:
            return {"since": day_start(since_text, settings), "until": day_start(until_text, settings, end=True),
                    "days": "", "since_text": since_text, "until_text": until_text, "error": ""}
        except PeriodError:
            error = "日期格式应为 YYYY-MM-DD,已改用近 30 天。"
    days = params.get("days", DEFAULT_DAYS) if not error else DEFAULT_DAYS
    if days not in dict(PERIODS):
        days = DEFAULT_DAYS
    today = now.astimezone(display_zone(settings)).date()
    first = None if days == "all" else today - timedelta(days=int(days) - 1)
    return {"since": day_start(first.isoformat(), settings) if first else None, "until": None, "days": days,
            "since_text": first.isoformat() if first else "", "until_text": "", "error": error}


def _row_text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{x:.0f}" y="{y:.0f}" text-anchor="{anchor}"{c}>{escape(text)}</text>'


def _bar(x: float, y: float, w: float, cls: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.0f}" width="{w:.1f}" height="{BAR_H}" rx="2" class="{cls}"></rect>'


def _share(n: int, top: int) -> float:
    return 0 if n == 0 or top == 0 else max(2.0, math.floor(WIDTH * n / top * 10) / 10)


def _svg(rows: list[str], height: int, title: str) -> Markup:
    return Markup(f'<svg class="funnel" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}" '
                  f'xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>')


def funnel_svg(report: dict) -> Markup:
    """The steps as bars (the longest is the first step's), the two routes in one row."""
    steps = {s["step"]: s for s in report["funnel"]}
    top = max((s["count"] for s in report["funnel"]), default=0)
    if not top:
        return Markup('<p class="muted">这段时间没有记录到申诉漏斗的数据。</p>')
    parts, y = [], 0
    order = ["remedy", "offered", "accepted", "route", "confirmed", "sent", "replied", "resolved", "rejected"]
    for step in order:
        if step == "route":
            online, email = steps["route_online"]["count"], steps["route_email"]["count"]
            label = f"选择途径 {online + email}:线上反馈 {online} · 邮箱 {email}"
            tail = f"未选途径 {report['route_dropped']}" if report["route_dropped"] else ""
            w1, w2 = _share(online, top), _share(email, top)
            bars = _bar(0, y + 20, w1, "online") + _bar(w1, y + 20, w2, "email")
        else:
            s = steps[step]
            label = f"{STEP_NAMES[step]} {s['count']}"
            if s.get("rate") is not None:
                label += f" · {s['rate']:.0%}"
            tail = f"流失 {s['dropped']}" if s.get("dropped") else ""
            bars = _bar(0, y + 20, _share(s["count"], top), "step")
        parts.append(_row_text(0, y + 14, label) + (_row_text(WIDTH, y + 14, tail, "drop", "end") if tail else "")
                     + f'<rect x="0" y="{y + 20}" width="{WIDTH}" height="{BAR_H}" rx="2" class="track"></rect>'
                     + bars)
        y += ROW_H
    return _svg(parts, y, "申诉漏斗")


def items_svg(report: dict, route: str, kb) -> Markup:
    """The route's items in order: reached (light), given (dark), and how many stopped there."""
    items = [i for i in report["items"] if i["route"] == route]
    top = max((i["reached"] for i in items), default=0)
    if not top:
        return Markup('<p class="muted">暂无数据</p>')
    parts, y = [], 0
    for n, i in enumerate(items, start=1):
        label = f"{n}. {re.split(r'[(（]', item_label(kb, route, i['slot']))[0]}"  # short: one line at 360
        numbers = f"到达 {i['reached']} · 填完 {i['filled']}"
        parts.append(_row_text(0, y + 14, label) + _row_text(WIDTH, y + 14, numbers, "muted", "end")
                     + f'<rect x="0" y="{y + 20}" width="{WIDTH}" height="{BAR_H}" rx="2" class="track"></rect>'
                     + _bar(0, y + 20, _share(i["reached"], top), "reached")
                     + _bar(0, y + 20, _share(i["filled"], top), "filled"))
        if i["stopped"]:
            parts.append(_row_text(WIDTH - 4, y + 31, f"停在这 {i['stopped']}", "stop", "end"))
        y += ROW_H
    stopped = report["stopped_at_summary"].get(route, 0)
    if stopped:
        parts.append(_row_text(0, y + 14, f"材料齐了但没确认 {stopped}", "stop"))
        y += 24
    return _svg(parts, y, "申诉材料各项")
