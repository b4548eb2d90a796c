"""Conversation review: recent DM conversations as transcripts (redacted when recorded), filtered by
a misread turn, a state or a prompt; one conversation as a chat with the bot's reading of each
message; and a label on a creator's turn that says what the message meant. A label becomes a
phrasing in knowledge/learned.yaml (validated and reloaded at once; the running bots follow) and a
regression case in knowledge/learned_cases.jsonl; one that would break a saved case is refused
unless confirmed. Viewing and labelling are audited (the conversation's id, never its text)."""
from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from bot.kb import KnowledgeError
from bot.kb.learned import add_phrasing
from bot.matching.cases import Case, CasesBroken, append_case, broken_cases, load_cases, parse_label
from bot.web.site import PAGE_SIZE, Site, faq_question, kb_diff

STATE_NAMES = {"idle": "空闲", "choice": "选择提示语", "appeal_offer": "问是否申诉", "route": "问线上反馈入口",
               "collecting": "收集材料", "file_slot": "问文件是哪项", "military": "问军人证件", "confirm": "确认材料",
               "switch": "换提示语", "quit_confirm": "确认退出", "delete_confirm": "确认删除",
               "supplement_which": "补充哪些项", "supplement_upload": "补充已上传?"}
MISREAD_NAMES = {"reasked": "重复提问", "not_understood": "没看懂", "repeated": "用户重复"}
INTENT_NAMES = {"affirm": "是(事实)", "consent": "同意/要", "deny": "否/不要", "unsure": "不确定", "not_now": "以后再说",
                "thanks": "感谢", "greeting": "问候", "who_are_you": "问你是谁", "human": "转人工", "no_prompt": "没有提示语",
                "out_of_scope": "无关问题", "keep_data": "保留资料", "drop_data": "删除资料", "quit": "不想弄了",
                "edit": "修改某项", "appeal_request": "要申诉", "from_group": "从群里来"}
COMMAND_NAMES = {"cancel": "取消", "restart": "重新开始", "skip": "跳过", "progress": "进度", "help": "帮助",
                 "delete": "删除我的资料", "appeal": "申诉", "pause": "暂停", "details": "详细", "resume": "继续",
                 "supplement": "补充"}


def label_choices(kb) -> list[tuple[str, list[tuple[str, str]]]]:
    """The label form's options, grouped: (group name, [(value, text)])."""
    return [
        ("意图", [(f"intent:{n}", f"{INTENT_NAMES.get(n, n)} ({n})") for n in kb.intents if n != "neutral"]),
        ("命令", [(f"command:{n}", f"{COMMAND_NAMES.get(n, n)} ({n})") for n in kb.commands]),
        ("提示语", [(f"prompt:{p.id}", f"{p.id}. {p.text[:24]}") for p in kb.prompts]),
        ("FAQ", [(f"faq:{f.id}", faq_question(f)) for f in kb.faq]),
    ]


def valid_label(kb, label: str) -> tuple[str, str]:
    kind, name = parse_label(label)
    known = {"intent": set(kb.intents) - {"neutral"}, "command": set(kb.commands),
             "prompt": {str(p.id) for p in kb.prompts}, "faq": {f.id for f in kb.faq}}[kind]
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}")
    return kind, name


def routes(site: Site) -> list[Route]:
    console, settings, page, audit, guarded = site.console, site.settings, site.page, site.audit, site.guarded

    @guarded
    async def conversations(request: Request):
        q = request.query_params
        misread, state = q.get("misread") == "1", q.get("state", "")
        # bounded: a huge number would overflow PostgreSQL's integer columns
        prompt = int(q["prompt"]) if q.get("prompt", "").isdigit() and len(q["prompt"]) <= 6 else None
        pageno = min(max(1, int(q["page"])), 100_000) if q.get("page", "").isdigit() and len(q["page"]) <= 9 else 1
        rows, total = console.store.transcript_conversations(misread, state or None, prompt, PAGE_SIZE,
                                                             (pageno - 1) * PAGE_SIZE)
        audit(request, "view_conversations")
        keep = urlencode([(k, v) for k, v in (("misread", "1" if misread else ""), ("state", state),
                                              ("prompt", prompt or "")) if v])  # the filters, kept when paging
        return page(request, "conversations.html", rows=rows, total=total, pageno=pageno,
                    more=pageno * PAGE_SIZE < total, misread=misread, state=state, prompt=prompt, keep=keep,
                    prompts=console.kb.prompts, state_names=STATE_NAMES, misread_names=MISREAD_NAMES,
                    days=settings.transcript_days)

    async def show(request: Request, conv: str, message: str = "", error: str = "", confirm_seq=None,
                   confirm_label: str = "", status_code: int = 200):
        turns = console.store.transcript_turns(conv)
        if not turns:
            return page(request, "conversation.html", conv=conv, turns=[], status_code=404)
        audit(request, "view_conversation", conv)
        return page(request, "conversation.html", conv=conv, turns=turns, choices=label_choices(console.kb),
                    state_names=STATE_NAMES, misread_names=MISREAD_NAMES, message=message, error=error,
                    confirm_seq=confirm_seq, confirm_label=confirm_label, status_code=status_code,
                    waiting=lambda s, a: STATE_NAMES.get(s, s) + (f" · {console.kb.items[a].label}"
                                                                 if a in console.kb.items else ""))

    @guarded
    async def conversation(request: Request):
        return await show(request, request.path_params["conv"])

    @guarded
    async def label(request: Request):
        conv, form = request.path_params["conv"], request.state.form
        seq = int(form["seq"]) if str(form.get("seq", "")).isdigit() and len(str(form["seq"])) <= 15 else -1
        turn = console.store.transcript_turn(seq)
        if turn is None or turn["conv"] != conv or turn.get("file") or not turn.get("text"):
            return await show(request, conv, error="这一轮不能标注。", status_code=400)
        value = str(form.get("label", ""))
        if value == "dismiss":
            console.store.label_transcript(seq, "dismiss", site.who(request))
            audit(request, "conversation_label", f"{conv}/{seq} dismiss")
            return RedirectResponse(f"/conversations/{conv}#t{seq}", status_code=303)
        try:
            kind, name = valid_label(console.kb, value)
        except ValueError:
            return await show(request, conv, error="请选择这句话的意思。", status_code=400)
        case = Case(turn["state_before"], turn.get("awaiting_before"), turn["text"], value)
        confirmed = form.get("confirm") == "1"

        def check(kb):
            new = broken_cases(kb, [case])
            if new:  # taught, and still not read as labelled: nothing is kept
                raise ValueError(f"加入后这句话仍读作:{new[0][1]}")
            broken = broken_cases(kb, load_cases(settings.knowledge_dir))
            if broken and not confirmed:
                raise CasesBroken(broken)

        old = console.kb
        try:
            console.kb = await asyncio.to_thread(add_phrasing, settings.knowledge_dir, kind, name, turn["text"], check)
        except CasesBroken as exc:
            return await show(request, conv, error=f"未保存:会让 {len(exc.broken)} 个已保存的用例不再成立:\n{exc}",
                              confirm_seq=seq, confirm_label=value, status_code=409)
        except (KnowledgeError, ValueError) as exc:
            return await show(request, conv, error=f"未保存:{exc}", status_code=400)
        append_case(settings.knowledge_dir, case.state, case.awaiting, case.text, value, f"web:{site.who(request)}")
        console.store.label_transcript(seq, value, site.who(request))
        console.store.bump_kb_generation()  # every bot process on this store reloads on its next tick
        audit(request, "conversation_label", f"{conv}/{seq} {value}")
        return await show(request, conv, message=f"已保存:{value},知识库已重载:{kb_diff(old, console.kb)}。"
                                                 "运行中的机器人会在下一次检查时自动重载。")

    return [
        Route("/conversations", conversations),
        Route("/conversations/{conv:str}", conversation),
        Route("/conversations/{conv:str}/label", label, methods=["POST"]),
    ]
