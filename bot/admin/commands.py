"""Admin commands, on every transport. Admins are contact ids listed in the settings; they
use the commands in a DM, or in a room when they @mention the bot. Anyone else gets a plain
refusal that reveals nothing, and the attempt is logged.
"""
from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.messages import Incoming, Outgoing
from bot.settings import Settings
from bot.store import SqlStore
from bot.timefmt import local_minutes

log = logging.getLogger(__name__)

_RELOAD = {"#reload", "/reload", "重载知识库"}
_COMMAND = re.compile(r"^\s*(#reload|/reload|重载知识库|#kb|#stats|#unmatched|#appeals|#room)(?:\s+(\S+))?\s*$",
                      re.IGNORECASE)
# #appeal AP-… 审核中|已通过|未通过|需补充 [备注]
_APPEAL = re.compile(r"^\s*#appeal\s+(\S+)\s+(\S+)(?:\s+(.+))?$", re.IGNORECASE | re.S)
REFUSAL = "抱歉,这个指令只有管理员可以使用。"


def waiting_for(kb, state: str, awaiting: str | None) -> str:
    """What the bot waited for, for operators: the awaited item's label from the knowledge base
    (e.g. 姓名), else the state's name."""
    item = kb.items.get(awaiting or "") if kb is not None else None
    return item.label if item is not None else (state or awaiting or "?")


def unmatched_label(kb, row: dict, sep: str = ":") -> str:
    """A `top_unmatched_all` row's kind in Chinese: 空闲, or 等待<sep><what it waited for>."""
    if row.get("kind") != "waiting":
        return "空闲"
    return f"等待{sep}{waiting_for(kb, row.get('state', ''), row.get('awaiting'))}"


_LOADED_BY = {"start": "启动时", "file change": "文件变动", "another process": "另一个进程(#reload 或网页控制台)",
              "SIGHUP": "SIGHUP 信号"}


def loaded_by(by: str) -> str:
    """Who loaded the knowledge base, for operators: 文件变动, 启动, 管理员 <id>, ..."""
    return _LOADED_BY.get(by, f"管理员 {by}")


def already_loaded(snapshot, settings) -> str:
    """#reload when nothing changed since the last load (often: the file watcher was first)."""
    at = local_minutes(snapshot.loaded_at, settings)
    if snapshot.loaded_by == "start":
        return f"知识库已是最新版本 {snapshot.kb.version},启动时加载于 {at},文件没有变化。"
    who = loaded_by(snapshot.loaded_by)
    gap = " " if who[-1:].isascii() else ""  # 管理员 boss 重新加载, 文件变动重新加载
    return f"知识库已是最新版本 {snapshot.kb.version},上次由{who}{gap}重新加载于 {at}。"


class AdminHost(Protocol):
    """What the admin commands need of the running bot (`bot.engine.Engine` is one): its settings
    and store, the knowledge snapshot (kb, loaded_at, loaded_by), when it started, a reload, an
    operator's status change and a room's mode."""
    settings: Settings
    store: SqlStore
    started_at: datetime
    snapshot: Any

    async def reload(self, by: str, check_cases: bool = False) -> Any: ...  # a report with `.text`

    def change_appeal_status(self, appeal_id: str, status: str, by: str, note: str | None = None,
                             now: datetime | None = None, items=None) -> dict: ...

    def room_mode(self, room: str) -> str: ...


class AdminCommands:
    def __init__(self, engine: AdminHost):
        self.engine = engine  # the host: the engine, or anything with AdminHost's parts

    @staticmethod
    def is_command(text: str) -> bool:
        return bool(text) and bool(_COMMAND.match(text) or _APPEAL.match(text))

    async def handle(self, msg: Incoming, now: datetime) -> list[Outgoing]:
        m = _COMMAND.match(msg.text)
        name, arg = (m.group(1).lower(), m.group(2)) if m else ("#appeal", None)

        def reply(text: str) -> list[Outgoing]:
            return [Outgoing(chat=msg.chat, to=msg.sender, text=text, mention=msg.room)]

        if msg.sender not in self.engine.settings.admins:
            log.warning("refused admin command %s from a non-admin (message %s)", name, msg.message_id)
            return reply(REFUSAL)
        log.info("admin command %s by admin (message %s)", name, msg.message_id)
        if name in _RELOAD:
            # refused when it breaks a saved regression case, unless confirmed: #reload 确认
            confirmed = (arg or "").lower() in ("确认", "confirm", "force")
            return reply((await self.engine.reload(by=msg.sender, check_cases=not confirmed)).text)
        if name == "#kb":
            return reply(self._kb())
        if name == "#stats":
            return reply(self._stats(now))
        if name == "#unmatched":
            return reply(self._unmatched(now))
        if name == "#appeals":
            return reply(self._appeals())
        if name == "#room":
            return reply(self._room(msg, arg))
        if name == "#appeal":
            return reply(self._appeal_status(msg, now))
        return reply(REFUSAL)

    def _kb(self) -> str:
        snap = self.engine.snapshot
        return (f"知识库版本:{snap.kb.version}\n条目:{len(snap.kb.prompts)} 条提示语,{len(snap.kb.groups)} 组处理方法\n"
                f"最近加载:{local_minutes(snap.loaded_at, self.engine.settings)}({loaded_by(snap.loaded_by)})\n"
                f"文件:{', '.join(p.rsplit('/', 1)[-1] for p in snap.kb.files)}")

    def _stats(self, now: datetime) -> str:
        store = self.engine.store
        lines = []
        for title, since in (("启动以来", self.engine.started_at), ("最近 24 小时", now - timedelta(hours=24))):
            c = store.event_counts(since)
            per_prompt = store.match_counts(since)
            matches = ",".join(f"#{k}:{v}" for k, v in per_prompt.items()) or "无"
            lines.append(f"【{title}】消息 {c.get('message', 0)} 条;命中 {c.get('match', 0)}({matches});"
                         f"待确认(suggest) {c.get('suggest', 0)};未命中(none) {c.get('none', 0)};"
                         f"申诉 开始 {c.get('appeal_started', 0)} / 完成 {c.get('appeal_finished', 0)} / "
                         f"放弃 {c.get('appeal_abandoned', 0)}")
        lines.append(self._funnel_line(now))
        return "\n".join(lines)

    def _funnel_line(self, now: datetime) -> str:
        """The appeal funnel of the attempts begun in the last 7 days, in one line (/stats draws it)."""
        from bot.stats.funnel import funnel_report, item_label

        kb = self.engine.snapshot.kb
        r = funnel_report(self.engine.store, kb, now - timedelta(days=7))
        n = {s["step"]: s["count"] for s in r["funnel"]}
        line = (f"【申诉漏斗 近 7 天】处理办法 {n['remedy']} → 提出申诉 {n['offered']} → 同意 {n['accepted']} → "
                f"线上反馈 {n['route_online']} / 邮箱 {n['route_email']} → 确认 {n['confirmed']} → "
                f"已发送 {n['sent']} → 平台回复 {n['replied']} → 已通过 {n['resolved']} / 未通过 {n['rejected']}")
        if r["stop_item"]:
            line += f";最多人停在 {item_label(kb, r['stop_item']['route'], r['stop_item']['slot'])}"
        return line

    def _unmatched(self, now: datetime) -> str:
        rows = self.engine.store.top_unmatched_all(now - timedelta(days=7), limit=15)
        if not rows:
            return "最近 7 天没有未命中或没看懂的消息。"
        kb = self.engine.snapshot.kb
        return ("最近 7 天最常见的未命中消息([空闲] 没有命中提示语;[等待 …] 等用户回答时没看懂):\n"
                + "\n".join(f"[{unmatched_label(kb, r, sep=' ')}] {r['text']} ×{r['count']}" for r in rows))

    def _appeals(self) -> str:
        from bot.appeals.status import STATUS_NAMES

        rows = self.engine.store.appeals(limit=10)
        if not rows:
            return "还没有申诉材料包。"
        return "最近的申诉材料包:\n" + "\n".join(
            f"{r['appeal_id']} | {'线上反馈' if r['route'] == 'online' else '邮件/人工客服'} | 提示语 #{r['prompt_id']} | "
            f"{STATUS_NAMES.get(r['status'], r['status'])} | {r['masked_identity']}" for r in rows)

    def _appeal_status(self, msg: Incoming, now: datetime) -> str:
        from bot.appeals.status import STATUS_WORDS, StatusError

        appeal_id, word, note = _APPEAL.match(msg.text).groups()
        if word not in STATUS_WORDS:
            return "用法:#appeal 申诉编号 审核中|已通过|未通过|需补充 [项目,项目] [备注]"
        items = None
        appeal = self.engine.store.appeal(appeal_id)
        if STATUS_WORDS[word] == "need_more" and note and appeal is not None:
            items, note = _items_and_note(self.engine.snapshot.kb, appeal, note)
        try:
            a = self.engine.change_appeal_status(appeal_id, STATUS_WORDS[word], by=f"admin:{msg.sender}",
                                                 note=note, now=now, items=items)
        except StatusError:
            return f"没有找到申诉 {appeal_id}。"
        return f"已将 {a['appeal_id']} 设为“{word}”" + (f",备注“{a['note']}”" if a.get("note") else "") + ",已通知创作者。"

    def _room(self, msg: Incoming, mode: str | None) -> str:
        if not msg.room:
            return "请在要设置的群里 @我 发送“#room off|mention|auto”。"
        if mode not in ("off", "mention", "auto"):
            return f"当前群的回复模式:{self.engine.room_mode(msg.chat)}。用法:#room off|mention|auto"
        self.engine.store.set_room_mode(msg.chat, mode)
        return f"已将本群的回复模式设为 {mode}。"


def _items_and_note(kb, appeal: dict, rest: str) -> tuple[list[str] | None, str | None]:
    """`手持身份证正面照片,单独身份证正面照片 照片不清晰`: the leading words that name items of the
    appeal's route, then the note."""
    from bot.appeals.status import StatusError, item_slots

    words = rest.split()
    items: list[str] = []
    while words:
        try:
            items += item_slots(kb, appeal, words[0])
        except StatusError:
            break
        words.pop(0)
    return (items or None), (" ".join(words) or None)
