"""What one message's handling shares: the turn (`Turn`), `awaiting_of`, and small pure helpers
and constants every scene may use. No dialog logic lives here."""
from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bot.dialog import validators as v
from bot.matching import MatchResult
from bot.matching.intents import Reading
from bot.matching.normalize import to_simplified
from bot.messages import Incoming
from bot.store import Conversation, Writes

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"
OFF_LOOP_BYTES = 2 * 1024 * 1024  # files larger than this are encrypted in a worker thread
FROM_GROUP_WITHIN = timedelta(hours=6)  # a DM "from the group" continues a group remedy this recent
EDIT_NUMBER = re.compile(r"^(?:修改|改)\s*第?\s*(\d{1,2})\s*项?$")  # 修改第3项, at the summary
_PUNCT = re.compile(r"[\s,，.。!！~～、;；:：\"'“”‘’()（）\[\]【】]+")


def plain(text: str) -> str:
    """The text without spaces and punctuation, NFKC, lower case (for comparing short answers)."""
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text or "")).lower()


def awaiting_of(conv: Conversation) -> str | None:
    """What the bot waits for from this user: a slot name, or the name of its question."""
    if conv.state == "idle":
        return None
    if conv.state == "collecting":
        return conv.data.get("awaiting")
    return conv.state


# What each waiting state asks, for the people the bot tells about a case (the handoff note).
STATE_NAMES = {"idle": "空闲", "appeal_offer": "要不要申诉", "choice": "是哪条提示语", "route": "有没有线上反馈入口",
               "confirm": "确认材料", "file_slot": "文件是哪一项", "military": "是否涉及军人证件",
               "quit_confirm": "是否放弃申诉", "delete_confirm": "是否删除资料", "switch": "换了提示语怎么办",
               "supplement_which": "补充哪几项", "supplement_upload": "补充材料是否已上传"}


def waiting_name(kb, conv: Conversation) -> str:
    """What the bot waits for, in words: the awaited item's label (姓名), else what the state asks."""
    awaiting = awaiting_of(conv)
    if awaiting is None:
        return STATE_NAMES["idle"]
    item = kb.items.get(awaiting)
    return item.label if item is not None else STATE_NAMES.get(awaiting, awaiting)


@dataclass
class Turn:
    """Everything one message handler needs: the message, its conversation, the clock, and
    how the message reads (computed once)."""
    msg: Incoming
    conv: Conversation
    now: datetime
    reading: Reading | None = None
    _match: MatchResult | None = None
    writes: Writes = field(default_factory=Writes)  # committed with the turn

    @property
    def data(self) -> dict:
        return self.conv.data


async def off_loop_if_big(path: Path, fn, *args, always: bool = False):
    """fn(*args) in a worker thread when the file is big (or `always`); on the loop otherwise,
    since for a photo the hand-off costs more than the work."""
    if always or Path(path).stat().st_size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def wildcard_value(prompt_text: str, wildcard: str | None, message: str | None) -> str | None:
    """The name a creator's message has where the prompt has its placeholder (prompt 14's 【XXX】).

    Anchored on the words either side of the placeholder; brackets and punctuation are dropped.
    """
    if not wildcard or not message or wildcard not in prompt_text:
        return None
    before, _, after = prompt_text.partition(wildcard)
    left = re.sub(r"\W", "", before)[-4:]
    right = re.sub(r"\W", "", after)[:4]
    if not left or not right:
        return None
    text = to_simplified(unicodedata.normalize("NFKC", message))
    m = re.search(re.escape(left) + r"\W*(.{1,30}?)\W*" + re.escape(right), text)
    if not m:
        return None
    name = re.sub(r"[\s【】\[\]<>《》\"'“”,，:：]+", "", m.group(1))
    if not name or name.upper() == "XXX" or v.find_id_numbers(name) or len(name) > 24:
        return None
    return name
