"""The appeal funnel, from the store's funnel rows (bot/store/funnel.py): how many attempts reached
each step, the drop-off from the step before, how far they got through the route's items, the item
where most of those who stopped stopped, and the median time from the offer to 确认.

An attempt begins at a remedy (or at 申诉/需要 with none before); each step counts once per attempt.
A period picks the attempts that began in it; their later steps count whenever they happened.
Attempts are put in the prompt group of their first prompt."""
from __future__ import annotations

import statistics
from datetime import date, datetime, time, timedelta

from bot.timefmt import display_zone

# The steps in order, and the step(s) each one's drop-off is measured from.
STEPS = ("remedy", "offered", "accepted", "route_online", "route_email", "confirmed", "sent", "replied",
         "resolved", "rejected")
BASE = {"offered": ("remedy",), "accepted": ("offered",), "route_online": ("accepted",),
        "route_email": ("accepted",), "confirmed": ("route_online", "route_email"), "sent": ("confirmed",),
        "replied": ("sent",), "resolved": ("confirmed",), "rejected": ("confirmed",)}
ROUTES = ("online", "email")
UNKNOWN_GROUP = "unknown"


def _attempts(rows: list[dict]) -> dict[str, dict]:
    """Rows by attempt: the steps reached (first time), items reached and filled, route, first prompt."""
    out: dict[str, dict] = {}
    for r in rows:  # in time order
        a = out.setdefault(r["attempt"], {"steps": {}, "reached": set(), "filled": set(), "route": None,
                                          "prompt_id": None, "start": r["at"]})
        if a["prompt_id"] is None and r["prompt_id"] is not None:
            a["prompt_id"] = r["prompt_id"]
        if r["route"] and a["route"] is None:
            a["route"] = r["route"]
        if r["step"] == "item":  # by route: after 重新开始 an attempt may take the other one
            a["reached"].add((r["route"], r["slot"]))
        elif r["step"] == "filled":
            a["filled"].add((r["route"], r["slot"]))
        else:
            a["steps"].setdefault(r["step"], r["at"])
            if r["step"].startswith("route_"):
                a["route"] = r["step"][6:]
    return out


def _route_slots(kb, route: str, attempts: list[dict]) -> list[str]:
    """The route's item slots in the knowledge's order, then any others the rows name (an older base)."""
    order = [m.slot for m in kb.routes[route].materials] if kb is not None and route in kb.routes else []
    seen = sorted({s for a in attempts for r, s in a["reached"] | a["filled"] if r == route} - set(order))
    return order + seen


def _report(attempts: list[dict], kb) -> dict:
    counts = {s: sum(1 for a in attempts if s in a["steps"]) for s in STEPS}
    funnel = []
    for s in STEPS:
        base = BASE.get(s)
        entry = {"step": s, "count": counts[s]}
        if base:
            before = sum(counts[b] for b in base)
            # the two routes split one step: their drop-off is `route_dropped` (no route chosen)
            dropped = None if s.startswith("route_") else max(0, before - counts[s])
            entry.update({"of": "+".join(base), "dropped": dropped,
                          "rate": round(counts[s] / before, 4) if before else None})
        funnel.append(entry)
    items, stops = [], {}
    for route in ROUTES:
        on_route = [a for a in attempts if any(r == route for r, _ in a["reached"])]
        slots = _route_slots(kb, route, on_route)
        for a in on_route:
            if "confirmed" in a["steps"] or a["route"] != route:
                continue  # stopped where it was last: on the route it chose last
            # where this attempt stopped: the first item asked but never given (else: at the summary)
            stop = next((s for s in slots if (route, s) in a["reached"] and (route, s) not in a["filled"]), "")
            stops[(route, stop)] = stops.get((route, stop), 0) + 1
        before = None
        for s in slots:
            reached = sum(1 for a in on_route if (route, s) in a["reached"])
            filled = sum(1 for a in on_route if (route, s) in a["filled"])
            items.append({"route": route, "slot": s, "reached": reached, "filled": filled,
                          "stopped": stops.get((route, s), 0),
                          "dropped": max(0, before - reached) if before is not None else None})
            before = filled
        if stops.get((route, "")):
            items.append({"route": route, "slot": "", "reached": 0, "filled": 0,
                          "stopped": stops[(route, "")], "dropped": None})  # stopped at the summary
    stop_item = None
    if stops:
        (route, slot), n = max(stops.items(), key=lambda kv: (kv[1], kv[0][0] == "email", kv[0][1]))
        stop_item = {"route": route, "slot": slot, "stopped": n}
    waits = [(datetime.fromisoformat(a["steps"]["confirmed"]) - datetime.fromisoformat(a["steps"]["offered"]))
             .total_seconds() for a in attempts if "offered" in a["steps"] and "confirmed" in a["steps"]]
    route_dropped = max(0, counts["accepted"] - counts["route_online"] - counts["route_email"])
    return {"attempts": len(attempts), "funnel": funnel, "route_dropped": route_dropped, "items": [i for i in items if i["slot"]],
            "stopped_at_summary": {r: stops.get((r, ""), 0) for r in ROUTES}, "stop_item": stop_item,
            "median_offer_to_confirm_seconds": statistics.median(waits) if waits else None,
            "offer_to_confirm_n": len(waits)}


def funnel_report(store, kb, since: datetime | None = None, until: datetime | None = None) -> dict:
    """The whole funnel and one per prompt group (each: `funnel`, `items`, `stop_item`, the median
    time from the offer to 确认 in seconds), for the attempts that began in [since, until)."""
    attempts = _attempts(store.funnel_rows(since, until))
    by_group: dict[str, list[dict]] = {}
    for a in attempts.values():
        group = kb.group_of(a["prompt_id"]) if kb is not None and a["prompt_id"] is not None else None
        by_group.setdefault(group.name if group else UNKNOWN_GROUP, []).append(a)
    order = list(kb.groups) if kb is not None else []
    groups = []
    for name in sorted(by_group, key=lambda g: (order.index(g) if g in order else len(order), g)):
        title = kb.groups[name].title if kb is not None and name in kb.groups else "未知"
        groups.append({"group": name, "title": title, **_report(by_group[name], kb)})
    first = store.funnel_first_at()
    return {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
            "recorded_since": first, **_report(list(attempts.values()), kb), "groups": groups}


# -- for people: the steps' names, a period's days, a duration -------------------------------------
STEP_NAMES = {"remedy": "给出处理办法", "offered": "提出帮忙申诉", "accepted": "同意申诉", "route_online": "线上反馈",
              "route_email": "邮箱/人工客服", "confirmed": "确认提交", "sent": "已发送", "replied": "平台已回复",
              "resolved": "已通过", "rejected": "未通过"}


class PeriodError(ValueError):
    pass


def day_start(text: str | None, settings, end: bool = False) -> datetime | None:
    """YYYY-MM-DD as the start of that day in the display timezone (`end`: of the day after)."""
    if not text:
        return None
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        raise PeriodError(f"not a date (YYYY-MM-DD): {text!r}") from None
    return datetime.combine(d + timedelta(days=1 if end else 0), time(), tzinfo=display_zone(settings))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes // 60} 小时 {minutes % 60} 分" if minutes >= 60 else f"{minutes} 分钟"


def item_label(kb, route: str, slot: str) -> str:
    if not slot:
        return "确认前的汇总"
    if kb is not None and route in kb.routes:
        found = next((m.label for m in kb.routes[route].materials if m.slot == slot), None)
        if found:
            return found
    return slot
