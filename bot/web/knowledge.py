"""The knowledge and activity pages: messages the bot did not understand (dismissed, or taught as a
phrasing of a prompt or FAQ entry: knowledge/learned.yaml, reloaded at once and by the running bot
on its next tick), the knowledge base and its reload, the charts and the appeal funnel (`funnel.py`), and
the audit log."""
from __future__ import annotations

import asyncio
from datetime import datetime, time, timedelta, timezone

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from bot.admin.commands import unmatched_label
from bot.kb import KnowledgeError
from bot.kb.learned import add_phrasing
from bot.matching.cases import CasesBroken
from bot.stats.funnel import duration, funnel_report, item_label
from bot.timefmt import display_zone
from bot.web import funnel as funnel_page
from bot.web.site import STATUS_NAMES, Site, bar_chart, kb_diff


def routes(site: Site) -> list[Route]:
    console, settings, page, audit, guarded = site.console, site.settings, site.page, site.audit, site.guarded

    @guarded
    async def audit_page(request: Request):
        return page(request, "audit.html", rows=console.store.audit_log(limit=300))

    @guarded
    async def unmatched(request: Request):
        return await unmatched_with(request, request.query_params.get("m", ""))

    @guarded
    async def unmatched_action(request: Request):
        form = request.state.form
        text, action = str(form.get("text", "")), str(form.get("action", ""))
        # which row: idle (state "idle" or none) or not understood while waiting (state, awaiting)
        state, awaiting = str(form.get("state", "") or "idle"), str(form.get("awaiting", ""))
        if action == "dismiss":
            console.store.dismiss_unmatched(text, state, awaiting)
            audit(request, "unmatched_dismiss")
            return RedirectResponse("/unmatched", status_code=303)
        kind, target = ("prompt", form.get("prompt_id")) if action == "prompt" else ("faq", form.get("faq_id"))
        if not target:
            return RedirectResponse("/unmatched", status_code=303)
        try:
            old = console.kb
            console.kb = await asyncio.to_thread(add_phrasing, settings.knowledge_dir, kind, target, text)
        except (KnowledgeError, ValueError) as exc:
            return await unmatched_with(request, f"未能加入:{exc}")
        console.store.dismiss_unmatched(text, state, awaiting)
        audit(request, f"learned_{kind}", str(target))
        diff = kb_diff(old, console.kb)
        return await unmatched_with(request, f"已加入{'提示语 ' + str(target) if kind == 'prompt' else 'FAQ ' + str(target)}"
                                             f"的说法,知识库已重载:{diff}。运行中的机器人会在下一次检查时自动重载。")

    async def unmatched_with(request: Request, message: str):
        since = datetime.now(timezone.utc) - timedelta(days=30)
        rows = [{**r, "label": unmatched_label(console.kb, r)} for r in console.store.top_unmatched_all(since, limit=50)]
        return page(request, "unmatched.html", rows=rows, prompts=console.kb.prompts, faq=console.kb.faq,
                    message=message)

    @guarded
    async def stats(request: Request):
        now = datetime.now(timezone.utc)
        chosen = funnel_page.period(request.query_params, settings, now)
        report = funnel_report(console.store, console.kb, chosen["since"], chosen["until"])
        zone = display_zone(settings)  # the days people read are days of the display timezone
        today = now.astimezone(zone).date()
        days = [(today - timedelta(days=i)).isoformat() for i in range(13, -1, -1)]
        first = datetime.combine(today - timedelta(days=13), time(0), zone)
        per_day = dict(console.store.messages_per_day(first, zone))
        charts = [
            ("每天的消息数(近 14 天)", bar_chart([(d[5:], per_day.get(d, 0)) for d in days])),
            ("各提示语的识别次数", bar_chart([(f"#{p}", n) for p, n in console.store.match_counts().items()])),
            ("各状态的申诉数", bar_chart([(STATUS_NAMES.get(s, s), n)
                                          for s, n in sorted(console.store.appeals_per_status().items())])),
        ]
        funnel = {"report": report, "period": chosen, "periods": funnel_page.PERIODS,
                  "total": funnel_page.funnel_svg(report),
                  "routes": [(r, funnel_page.items_svg(report, r, console.kb)) for r in ("online", "email")],
                  "groups": [(g, funnel_page.funnel_svg(g)) for g in report["groups"]],
                  "label": lambda stop: item_label(console.kb, stop["route"], stop["slot"]), "duration": duration}
        return page(request, "stats.html", charts=charts, counts=console.store.event_counts(), funnel=funnel)

    @guarded
    async def kb_page(request: Request):
        return page(request, "kb.html", kb=console.kb, result=None)

    @guarded
    async def kb_reload(request: Request):
        confirmed = request.state.form.get("confirm") == "1"
        try:
            old, new = await asyncio.to_thread(console.reload_kb, confirmed)
        except KnowledgeError as exc:
            audit(request, "kb_reload_failed")
            where = f"{exc.file}" + (f" 第 {exc.line} 行" if exc.line else "")
            return page(request, "kb.html", kb=console.kb, result={"ok": False, "text": f"{where}:{exc.reason}"})
        except CasesBroken as exc:  # shown with a confirm box; nothing changed
            audit(request, "kb_reload_refused")
            return page(request, "kb.html", kb=console.kb, status_code=409, result={
                "ok": False, "confirm": True, "text": f"会让 {len(exc.broken)} 个已保存的用例不再成立:\n{exc}"})
        except ValueError as exc:  # a malformed learned_cases.jsonl
            audit(request, "kb_reload_failed")
            return page(request, "kb.html", kb=console.kb, result={"ok": False, "text": str(exc)})
        audit(request, "kb_reload")
        return page(request, "kb.html", kb=new, result={"ok": True, "text": kb_diff(old, new)})

    return [
        Route("/audit", audit_page),
        Route("/unmatched", unmatched),
        Route("/unmatched/action", unmatched_action, methods=["POST"]),
        Route("/stats", stats),
        Route("/kb", kb_page),
        Route("/kb/reload", kb_reload, methods=["POST"]),
    ]
