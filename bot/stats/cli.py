"""`python -m bot stats [--json] [--since YYYY-MM-DD] [--until YYYY-MM-DD]`: the appeal funnel, per
prompt group and in total, as text or as one JSON object (the numbers of the console's /stats)."""
from __future__ import annotations

import json
import sys

from bot.stats.funnel import STEP_NAMES, PeriodError, day_start, duration, funnel_report, item_label
from bot.timefmt import local_minutes

ROUTE_WORDS = {"online": "线上反馈", "email": "邮箱/人工客服"}


def _text(report: dict, kb, settings) -> str:
    since = local_minutes(report["recorded_since"], settings) or "-"
    lines = [f"申诉漏斗:{report['attempts']} 次尝试(漏斗从数据库版本 10 起记录,第一条 {since})"]

    def block(r: dict, indent: str = "  ") -> None:
        for s in r["funnel"]:
            rate = f"  {s['rate']:.0%}" if s.get("rate") is not None else ""
            dropped = f",流失 {s['dropped']}" if s.get("dropped") else ""
            lines.append(f"{indent}{STEP_NAMES[s['step']]:\u3000<7}{s['count']:>6}{rate}{dropped}")
            if s["step"] == "route_email" and r["route_dropped"]:
                lines.append(f"{indent}{'未选途径':\u3000<7}{r['route_dropped']:>6}")
        stop = r["stop_item"]
        if stop:
            label = item_label(kb, stop["route"], stop["slot"])
            lines.append(f"{indent}最多人停在:{label}({ROUTE_WORDS.get(stop['route'], stop['route'])},"
                         f"{stop['stopped']} 人)")
        lines.append(f"{indent}提出申诉到确认的中位时间:{duration(r['median_offer_to_confirm_seconds'])}")

    block(report)
    for g in report["groups"]:
        lines.append(f"{g['title']}:{g['attempts']} 次尝试")
        block(g, "    ")
    return "\n".join(lines)


def stats_command(settings, args) -> int:
    from bot.engine import open_key_and_store
    from bot.kb import KnowledgeError, load_knowledge

    try:
        since, until = day_start(args.since, settings), day_start(args.until, settings, end=True)
    except PeriodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        kb = load_knowledge(settings.knowledge_dir)
    except KnowledgeError:
        kb = None  # the numbers without group names
    _, store = open_key_and_store(settings, check_key=False)  # no personal data is read
    try:
        report = funnel_report(store, kb, since, until)
    finally:
        store.close()
    print(json.dumps(report, ensure_ascii=False) if args.json else _text(report, kb, settings))
    return 0
