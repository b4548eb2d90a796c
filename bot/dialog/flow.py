"""The conversation state machine (transport-neutral).

One `Conversation` per (chat, sender). States and what the bot waits for (`awaiting`):

    idle            nothing pending
    choice          which of the suggested prompts (awaiting "choice")
    appeal_offer    "shall I help you prepare the appeal?" (awaiting "appeal_offer")
    route           is the 线上反馈 entry shown? (awaiting "route")
    collecting      one appeal item (awaiting = the slot name)
    military        does 军人证件 apply? (awaiting "military")
    file_slot       which item is the file just sent? (awaiting "file_slot")
    confirm         the final summary (awaiting "confirm")
    delete_confirm  delete everything about me? (awaiting "delete_confirm")

Commands (取消, 重新开始, 跳过, 进度, 帮助, 删除我的资料) work in every state. Appeals are collected only
in a DM; in rooms the bot answers with remedies and never asks for, nor echoes, personal data.
"""
from __future__ import annotations

import hashlib
import logging
import re
import secrets
import shutil
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bot.appeals import package as appeal_package
from bot.appeals.crypto import Vault, secure_dir
from bot.dialog import validators as v
from bot.dialog.slots import MILITARY_QUESTION, MILITARY_SLOT, NOT_APPLICABLE, SLOTS
from bot.kb import KnowledgeBase
from bot.matching import MatchResult, Matcher
from bot.messages import Incoming, Outgoing
from bot.privacy import redact
from bot.settings import Settings
from bot.store import Conversation, Store

log = logging.getLogger(__name__)

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"

HELP = (
    "我是大鱼号实名认证小助手。把认证失败时看到的提示语(或截图)发给我,我告诉你怎么处理;"
    "需要申诉时,我可以在私聊里一步步帮你整理申诉材料。\n"
    "随时可用的指令:进度、跳过(可选项)、暂停(保留资料)、重新开始、取消、删除我的资料、帮助"
)
NOT_UNDERSTOOD = ("我没有找到对应的认证失败提示。请把实名认证失败时看到的提示语原文发给我"
                  "(例如:人脸与公安网照片不一致,请确保是账户本人操作),也可以发截图。")

_YES = {"是", "是的", "对", "对的", "好", "好的", "要", "需要", "有", "有的", "可以", "嗯", "嗯嗯", "行",
        "ok", "okay", "y", "yes", "确认", "确定", "没错", "正确", "开始", "有入口", "有线上反馈"}
_NO = {"否", "不", "不是", "不用", "不要", "没有", "没", "无", "不需要", "n", "no", "算了", "不涉及",
       "没有入口", "没看到", "找不到", "不对"}
_COMMANDS = {
    "cancel": {"取消", "退出", "取消申诉", "不弄了"},
    "restart": {"重新开始", "重来", "从头开始"},
    "skip": {"跳过", "略过", "下一项"},
    "progress": {"进度", "查看进度", "还差什么", "还差哪些"},
    "help": {"帮助", "help", "菜单", "怎么用", "?", "？"},
    "delete": {"删除我的资料", "删除我的数据", "删除资料", "删除我的信息"},
    "appeal": {"申诉", "我要申诉", "准备申诉材料", "帮我申诉", "申诉材料"},
    "pause": {"暂停", "先保留", "保留资料", "稍后再说", "晚点再弄"},
}
_EDIT = re.compile(r"^(?:修改|改)\s*第?\s*(\d{1,2})\s*项?$")
_PUNCT = re.compile(r"[\s,，.。!！~～、;；:：\"'“”‘’()（）\[\]【】]+")


def _plain(text: str) -> str:
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text or "")).lower()


def _command(text: str) -> str | None:
    t = _plain(text)
    return next((name for name, words in _COMMANDS.items() if t in {_plain(w) for w in words}), None)


def yes_no(text: str) -> bool | None:
    t = _plain(text)
    if t in _YES:
        return True
    if t in _NO:
        return False
    return None


def awaiting_of(conv: Conversation) -> str | None:
    """What the bot waits for from this user: a slot name, or the name of its question."""
    if conv.state == "idle":
        return None
    if conv.state == "collecting":
        return conv.data.get("awaiting")
    return conv.state


@dataclass
class Turn:
    """Everything one message handler needs: the message, its conversation, and the clock."""
    msg: Incoming
    conv: Conversation
    now: datetime

    @property
    def data(self) -> dict:
        return self.conv.data


class Dialog:
    def __init__(self, settings: Settings, store: Store, vault: Vault, ocr=None):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.ocr = ocr  # bot.ocr.ScreenshotReader or None
        self.files_dir = settings.data_dir / "files"

    # == entry point ====================================================================
    async def handle(self, kb: KnowledgeBase, matcher: Matcher, msg: Incoming, conv: Conversation,
                     now: datetime) -> list[Outgoing]:
        self.kb, self.matcher = kb, matcher
        turn = Turn(msg, conv, now)
        if msg.room:
            return await self._room(turn)
        return await self._dm(turn)

    # == rooms ==========================================================================
    async def _room(self, t: Turn) -> list[Outgoing]:
        msg = t.msg
        if v.find_id_numbers(msg.text):
            # Never echo it; ask them to recall the message.
            return [self._say(t, "请注意:群里不要发身份证号码等个人信息,请尽快撤回刚才的消息。"
                                 "申诉材料请私聊我提交。", mention=True)]
        if msg.attachment is not None:
            if not msg.mention:
                return []
            if msg.attachment.kind == "image":
                text = await self._ocr_text(msg.attachment.path)
                if text and v.find_id_numbers(text):
                    return [self._say(t, "请注意:这张图片里有身份证信息,请尽快撤回。证件照片请私聊我提交。", mention=True)]
                if text:
                    result = self.matcher.match(text)
                    if result.tier != "none":
                        return self._answer_match(t, result, room=True)
            return [self._say(t, "群里请不要发证件照片或视频。申诉材料请加我好友后私聊发送;"
                                 "如果是认证失败的截图,也可以把提示语文字发到群里。", mention=True)]
        if t.conv.state == "choice":
            picked = self._pick_choice(t)
            if picked is not None:
                return picked
        if _command(msg.text) == "help" and msg.mention:
            return [self._say(t, HELP, mention=True)]
        result = self.matcher.match(msg.text)
        self._record_match(t, result)
        if result.tier == "confident" or (msg.mention and result.tier == "suggest"):
            return self._answer_match(t, result, room=True)
        return [self._say(t, NOT_UNDERSTOOD, mention=True)] if msg.mention else []

    # == direct messages ================================================================
    async def _dm(self, t: Turn) -> list[Outgoing]:
        msg, conv = t.msg, t.conv
        if msg.attachment is not None:
            return await self._attachment(t)
        text = (msg.text or "").strip()
        if not text:
            return [self._say(t, "我没收到文字内容。" + self._current_question(t, short=True))]
        command = _command(text)
        if command != "pause":
            t.data.pop("paused", None)
        if command and not (command == "appeal" and conv.state == "collecting"):
            return await getattr(self, f"_cmd_{command}")(t)
        handler = getattr(self, f"_state_{conv.state}", None)
        if handler is None:  # unknown state from a newer/older version: start clean
            conv.state = "idle"
            handler = self._state_idle
        return await handler(t, text)

    # -- idle and matching -----------------------------------------------------------------
    async def _state_idle(self, t: Turn, text: str) -> list[Outgoing]:
        result = self.matcher.match(text)
        self._record_match(t, result)
        if result.tier == "none":
            if len(_plain(text)) <= 4 and not _plain(text).isdigit():
                return [self._say(t, "你好!" + HELP)]
            return [self._say(t, NOT_UNDERSTOOD)]
        return self._answer_match(t, result, room=False)

    def _answer_match(self, t: Turn, result: MatchResult, room: bool) -> list[Outgoing]:
        if result.tier == "suggest":
            ids = [result.id] + [a["id"] for a in result.alternatives[:2]]
            lines = [f"{i + 1}. {self.kb.prompt(pid).text}" for i, pid in enumerate(ids)]
            t.conv.state = "choice"
            t.data["candidates"] = ids
            return [self._say(t, "你看到的是下面哪一条提示?回复编号即可:\n" + "\n".join(lines)
                              + "\n都不是的话,请把提示语原文发给我。", mention=room, prompt_id=None)]
        return self._remedy(t, result.id, room)

    def _remedy(self, t: Turn, prompt_id: int, room: bool) -> list[Outgoing]:
        prompt = self.kb.prompt(prompt_id)
        group = self.kb.groups[prompt.group]
        text = f"识别到的提示:{prompt.text}\n\n{self._render(group.remedy)}"
        if group.notes:
            text += "\n\n" + "\n".join(group.notes)
        t.data.pop("candidates", None)
        t.data["prompt_id"] = prompt_id
        if room:
            t.conv.state = "idle"
            t.conv.data = {}
            if group.appeal:
                text += ("\n\n如果检查后仍然失败,需要我帮你准备申诉材料的话,请私聊我"
                         "(群里请不要发身份证号、证件照片等个人信息)。")
            return [self._say(t, text, mention=True, prompt_id=prompt_id)]
        if group.appeal:
            t.conv.state = "appeal_offer"
            text += ("\n\n如果按上面的方法检查后仍然失败,我可以一步步帮你整理申诉材料。"
                     "需要吗?回复“是”开始,回复“否”结束。")
        else:
            t.conv.state = "idle"
        return [self._say(t, text, prompt_id=prompt_id)]

    def _render(self, remedy: str) -> str:
        email = self.settings.appeal_email
        return remedy.replace("{appeal_email}", f"({email})" if email else "(邮箱地址请向社群管理员获取)")

    def _pick_choice(self, t: Turn) -> list[Outgoing] | None:
        t_plain = _plain(t.msg.text)
        candidates = t.data.get("candidates") or []
        if t_plain.isdigit() and 1 <= int(t_plain) <= len(candidates):
            return self._remedy(t, candidates[int(t_plain) - 1], room=t.msg.room)
        return None

    async def _state_choice(self, t: Turn, text: str) -> list[Outgoing]:
        picked = self._pick_choice(t)
        if picked is not None:
            return picked
        t.conv.state = "idle"
        t.data.pop("candidates", None)
        return await self._state_idle(t, text)

    # -- appeal offer and route ------------------------------------------------------------
    async def _state_appeal_offer(self, t: Turn, text: str) -> list[Outgoing]:
        answer = yes_no(text)
        if answer is True:
            return self._start_appeal(t)
        if answer is False:
            t.conv.state = "idle"
            return [self._say(t, "好的,祝认证顺利!之后需要帮忙整理申诉材料,发“申诉”给我即可。")]
        return await self._maybe_new_prompt(t, text, "需要我帮你整理申诉材料吗?回复“是”或“否”。")

    async def _maybe_new_prompt(self, t: Turn, text: str, reask: str) -> list[Outgoing]:
        """An unexpected answer to a question may be a new failure prompt: answer that instead."""
        result = self.matcher.match(text)
        if result.tier != "none":
            self._record_match(t, result)
            self._drop_collected(t.data)
            t.conv.data = {}
            return self._answer_match(t, result, room=False)
        return [self._say(t, reask)]

    def _start_appeal(self, t: Turn) -> list[Outgoing]:
        t.conv.state = "route"
        t.data.update(slots={}, failures={}, started_at=t.now.isoformat())
        self.store.record("appeal_started", t.now, t.data.get("prompt_id"))
        return [self._say(t, "好的,我们开始整理申诉材料(只在私聊里进行,资料加密保存,随时回复“取消”或“删除我的资料”)。\n"
                             "先确认一下:你的大鱼号后台有没有【线上反馈】入口?回复“有”或“没有”。")]

    async def _state_route(self, t: Turn, text: str) -> list[Outgoing]:
        answer = yes_no(text)
        if answer is None:
            return await self._maybe_new_prompt(t, text, "请回复“有”或“没有”:你的大鱼号后台是否有【线上反馈】入口?")
        route = "online" if answer else "email"
        t.data["route"] = route
        r = self.kb.routes[route]
        intro = ("好的,走【线上反馈】途径,需要 4 项材料:" if route == "online"
                 else "好的,走在线人工客服/大鱼号邮箱途径,需要以下材料:")
        items = "\n".join(f"{CIRCLED[i]}{m.label}" for i, m in enumerate(r.materials))
        return [self._say(t, f"{intro}\n{items}\n我们一项一项来。"), *self._ask_next(t)]

    # -- collecting ------------------------------------------------------------------------
    def _materials(self, t: Turn):
        return self.kb.routes[t.data["route"]].materials

    def _missing(self, t: Turn) -> list:
        slots = t.data.get("slots", {})
        return [m for m in self._materials(t) if m.slot not in slots]

    def _ask_next(self, t: Turn, prefix: str = "") -> list[Outgoing]:
        missing = self._missing(t)
        if t.data.pop("editing", False) or not missing:
            return self._summary(t, prefix)
        m = missing[0]
        total = len(self._materials(t))
        number = f"({total - len(missing) + 1}/{total}) "
        if m.slot == MILITARY_SLOT:
            t.conv.state, t.data["awaiting"] = "military", "military"
            return [self._say(t, prefix + number + MILITARY_QUESTION)]
        t.conv.state, t.data["awaiting"] = "collecting", m.slot
        if m.slot == "error_prompt" and t.data.get("prompt_id"):
            prompt = self.kb.prompt(t.data["prompt_id"])
            return [self._say(t, prefix + number + f"【异常提示语】根据你发来的内容,提示语是:“{prompt.text}”。对吗?"
                                 "回复“对”确认,或直接发送你看到的提示语原文。")]
        return [self._say(t, prefix + number + SLOTS[m.slot].ask)]

    async def _state_collecting(self, t: Turn, text: str) -> list[Outgoing]:
        slot = t.data.get("awaiting")
        spec = SLOTS.get(slot)
        if spec is None:
            return self._ask_next(t)
        if spec.kind != "text":
            what = "视频" if spec.kind == "video" else "图片"
            return self._failed(t, slot, f"这一项需要发送{what}文件,不是文字。")
        if slot == "error_prompt":
            return self._take_error_prompt(t, text)
        check = spec.validate(text)
        if not check.ok:
            return self._failed(t, slot, check.error)
        t.data["slots"][slot] = check.value
        t.data.get("failures", {}).pop(slot, None)
        shown = v.mask_id_number(check.value) if slot == "id_number" else None
        return self._ask_next(t, f"已记录{('身份证号 ' + shown) if shown else ''}。\n")

    def _take_error_prompt(self, t: Turn, text: str) -> list[Outgoing]:
        prompt = self.kb.prompt(t.data.get("prompt_id") or 0)
        if prompt and yes_no(text) is True:
            value = prompt.text
        else:
            value = " ".join(text.split())
            if len(value) < 4 or len(value) > 300 or yes_no(text) is False:
                return self._failed(t, "error_prompt", "请直接发送提示语原文(4-300 个字),例如:验证不通过,请重新认证。")
        t.data["slots"]["error_prompt"] = value
        return self._ask_next(t, "已记录。\n")

    def _failed(self, t: Turn, slot: str, error: str) -> list[Outgoing]:
        failures = t.data.setdefault("failures", {})
        failures[slot] = failures.get(slot, 0) + 1
        text = f"{error}\n{self._question_for(t, slot)}"
        if failures[slot] >= self.settings.max_validation_failures:
            text += ("\n\n这一项已经试了好几次都没通过。你可以通过大鱼号的【在线人工客服】求助,"
                     "已收集的资料我会先帮你保留(回复“进度”查看,回复“取消”放弃)。")
        return [self._say(t, text)]

    def _question_for(self, t: Turn, slot: str) -> str:
        if slot == MILITARY_SLOT and t.conv.state == "military":
            return MILITARY_QUESTION
        return SLOTS[slot].ask

    async def _state_military(self, t: Turn, text: str) -> list[Outgoing]:
        answer = yes_no(text)
        if answer is None:
            return [self._say(t, "请回复“是”或“否”:" + MILITARY_QUESTION)]
        if answer is False:
            t.data["slots"][MILITARY_SLOT] = NOT_APPLICABLE
            return self._ask_next(t)
        t.conv.state, t.data["awaiting"] = "collecting", MILITARY_SLOT
        return [self._say(t, SLOTS[MILITARY_SLOT].ask + "(如不需要了,回复“跳过”)")]

    # -- files ---------------------------------------------------------------------------
    async def _attachment(self, t: Turn) -> list[Outgoing]:
        att = t.msg.attachment
        state, awaiting = t.conv.state, t.data.get("awaiting")
        spec = SLOTS.get(awaiting) if state == "collecting" else None
        # A photo or video may arrive labelled as a file, or as the other kind: content decides.
        if spec is not None and spec.kind != "text":
            check = self._check_file(att.path, spec.kind)
            if check.ok or att.kind in (spec.kind, "file"):
                return await self._fill_file_slot(t, awaiting, att.path, check)
        if state in ("collecting", "military", "confirm", "route", "file_slot") and t.data.get("route"):
            return await self._keep_pending(t, att.path, att.kind)
        if att.kind == "image" and state not in ("delete_confirm",):
            text = await self._ocr_text(att.path)
            if text is None:
                return [self._say(t, "我暂时读不了图片里的文字。请直接把截图上的失败提示语打字发给我。")]
            result = self.matcher.match(text)
            self._record_match(t, result)
            if result.tier == "none":
                return [self._say(t, "我在这张图片里没有找到认证失败的提示语。请把你看到的提示语打字发给我。")]
            return self._answer_match(t, result, room=False)
        return [self._say(t, "收到文件。如果要整理申诉材料,请先把认证失败的提示语发给我,我会告诉你需要哪些材料。")]

    def _check_file(self, path: Path, kind: str) -> v.Validation:
        max_bytes = int(self.settings.max_attachment_mb * 1024 * 1024)
        if kind == "image":
            return v.validate_image(path, max_bytes=max_bytes)
        return v.validate_video(path, max_bytes=max_bytes)

    async def _fill_file_slot(self, t: Turn, slot: str, path: Path, check: v.Validation) -> list[Outgoing]:
        want = SLOTS[slot].kind
        if not check.ok:
            return self._failed(t, slot, check.error)
        ref = self._store_file(t, path, check)
        t.data["slots"][slot] = ref
        t.data.get("failures", {}).pop(slot, None)
        note = ""
        if slot == "taobao_screenshot":
            text = await self._ocr_text(path, keep=True)
            if text:
                ref["ocr_text"] = text[:2000]
                result = self.matcher.match(text)
                if result.tier != "none":
                    ref["ocr_prompt_id"] = result.id
                    if "error_prompt" not in t.data["slots"]:
                        t.data["prompt_id"] = result.id
                        note = f"(截图里识别到提示:{self.kb.prompt(result.id).text})"
        return self._ask_next(t, f"已收到{'视频' if want == 'video' else '图片'}。{note}\n")

    async def _keep_pending(self, t: Turn, path: Path, kind: str) -> list[Outgoing]:
        want = "video" if kind in ("video", "file") else "image"
        check = self._check_file(path, want)
        if not check.ok and kind == "file":
            want, check = "image", self._check_file(path, "image")
        if not check.ok:
            return [self._say(t, check.error + "\n" + self._current_question(t, short=True))]
        ref = self._store_file(t, path, check)
        options = [m for m in (self._missing(t) or self._materials(t)) if SLOTS[m.slot].kind == want]
        if not options:
            self._delete_ref(ref)
            return [self._say(t, "这份文件目前用不上,已丢弃。" + self._current_question(t, short=True))]
        t.data["pending_file"] = {"ref": ref, "options": [m.slot for m in options],
                                  "back": [t.conv.state, t.data.get("awaiting")]}
        t.conv.state, t.data["awaiting"] = "file_slot", "file_slot"
        lines = "\n".join(f"{i + 1}. {m.label}" for i, m in enumerate(options))
        return [self._say(t, f"收到一个{'视频' if want == 'video' else '图片'},它是哪一项材料?回复编号:\n{lines}\n"
                             "回复“0”丢弃这个文件。")]

    async def _state_file_slot(self, t: Turn, text: str) -> list[Outgoing]:
        pending = t.data.get("pending_file") or {}
        options = pending.get("options", [])
        choice = _plain(text)
        if not choice.isdigit() or int(choice) > len(options):
            return [self._say(t, f"请回复 1-{len(options)} 的编号,或回复“0”丢弃这个文件。")]
        t.data.pop("pending_file")
        t.conv.state, t.data["awaiting"] = pending["back"]
        if int(choice) == 0:
            self._delete_ref(pending["ref"])
            return [self._say(t, "已丢弃。" + self._current_question(t, short=True))]
        slot = options[int(choice) - 1]
        old = t.data["slots"].get(slot)
        if isinstance(old, dict):
            self._delete_ref(old)
        t.data["slots"][slot] = pending["ref"]
        if t.conv.state == "confirm":
            return self._summary(t, "已更新。\n")
        if t.data.get("awaiting") == slot or t.conv.state != "collecting":
            return self._ask_next(t, "已记录。\n")
        return [self._say(t, "已记录。" + self._current_question(t, short=False))]

    def _store_file(self, t: Turn, path: Path, check: v.Validation) -> dict:
        user_dir = secure_dir(self.files_dir / self._user_key(t.msg.sender))
        name = secrets.token_hex(8) + ".enc"
        self.vault.write(user_dir / name, Path(path).read_bytes())
        ref = {"file": f"{user_dir.name}/{name}", "kind": check.kind or "file", "format": check.value}
        if check.width:
            ref["size"] = f"{check.width}×{check.height}"
        if check.duration_seconds:
            ref["seconds"] = round(check.duration_seconds, 1)
        return ref

    def _delete_ref(self, ref: dict) -> None:
        (self.files_dir / ref["file"]).unlink(missing_ok=True)

    @staticmethod
    def _user_key(sender: str) -> str:
        """Folder name for a user's working files: not their contact id."""
        return hashlib.sha256(sender.encode()).hexdigest()[:16]

    async def _ocr_text(self, path: Path, keep: bool = False) -> str | None:
        if self.ocr is None:
            return None
        from bot.ocr import OcrUnavailable

        try:
            result = await self.ocr.read(Path(path))
        except OcrUnavailable:
            return None
        except Exception as exc:  # OCR is best effort: a bad picture must not break the dialog
            log.info("ocr failed: %s", type(exc).__name__)
            return ""
        return result.text

    # -- summary and package ---------------------------------------------------------------
    def _describe(self, slot: str, value) -> str:
        if isinstance(value, dict):
            kind = {"image": "图片", "video": "视频"}.get(value.get("kind"), "文件")
            extra = value.get("size") or (f"{value['seconds']} 秒" if value.get("seconds") else "")
            return f"已收到{kind}" + (f"({extra})" if extra else "")
        if slot == "id_number":
            return v.mask_id_number(value)
        return str(value)

    def _summary(self, t: Turn, prefix: str = "") -> list[Outgoing]:
        t.conv.state, t.data["awaiting"] = "confirm", "confirm"
        slots = t.data["slots"]
        lines = [f"{CIRCLED[i]}{m.label}:{self._describe(m.slot, slots.get(m.slot, ''))}"
                 for i, m in enumerate(self._materials(t))]
        return [self._say(t, prefix + "材料已齐,请核对:\n" + "\n".join(lines)
                          + "\n\n回复“确认”生成申诉材料包;回复“修改 3”可重新填写第 3 项;回复“取消”放弃。")]

    async def _state_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        edit = _EDIT.match(_plain(text))
        if edit:
            n = int(edit.group(1))
            materials = self._materials(t)
            if not 1 <= n <= len(materials):
                return [self._say(t, f"请回复“修改 1”到“修改 {len(materials)}”之间的编号。")]
            slot = materials[n - 1].slot
            old = t.data["slots"].pop(slot, None)
            if isinstance(old, dict):
                self._delete_ref(old)
            t.data["editing"] = True
            if slot == MILITARY_SLOT:
                t.conv.state, t.data["awaiting"] = "military", "military"
                return [self._say(t, MILITARY_QUESTION)]
            t.conv.state, t.data["awaiting"] = "collecting", slot
            return [self._say(t, SLOTS[slot].ask)]
        if yes_no(text) is True:
            return self._finish(t)
        return [self._say(t, "请回复“确认”生成申诉材料包,或“修改 N”修改第 N 项,或“取消”放弃。")]

    def _finish(self, t: Turn) -> list[Outgoing]:
        route = t.data["route"]
        r = self.kb.routes[route]
        prompt = self.kb.prompt(t.data.get("prompt_id") or 0)
        appeal_id = appeal_package.new_appeal_id(t.now)
        slots = t.data["slots"]
        files, values = {}, {}
        for m in r.materials:
            value = slots.get(m.slot)
            if isinstance(value, dict):
                files[m.slot] = self.vault.read(self.files_dir / value["file"])
            elif value is not None:
                values[m.slot] = value
        evidence = slots.get("taobao_screenshot")
        if isinstance(evidence, dict) and evidence.get("ocr_text"):
            values["taobao_screenshot_ocr_text"] = evidence["ocr_text"]
        record = {
            "appeal_id": appeal_id, "route": route, "prompt_id": prompt.id if prompt else None,
            "prompt_text": prompt.text if prompt else None, "user": t.msg.sender,
            "created_at": t.data.get("started_at"), "confirmed_at": t.now.isoformat(),
            "status": "ready", "slots": values,
            "materials": [{"slot": m.slot, "label": m.label, "optional": m.optional} for m in r.materials],
        }
        appeal_package.write_package(self.settings, self.vault, record, files)
        masked = v.mask_id_number(values["id_number"]) if values.get("id_number") else "-"
        self.store.add_appeal(appeal_id, t.msg.sender, route, record["prompt_id"], masked, t.now)
        self.store.record("appeal_finished", t.now, record["prompt_id"])
        self._drop_collected(t.data)
        t.conv.state, t.conv.data = "idle", {}
        if route == "online":
            nxt = (f"下一步:登录大鱼号后台,通过【线上反馈】入口提交这 {len(r.materials)} 项材料:"
                   + "、".join(m.label for m in r.materials) + "。收到您的材料后平台会进一步核实。")
        else:
            subject = r.email_subject.format(account_name=values.get("account_name", ""))
            to = f"发送邮件到 {self.settings.appeal_email}" if self.settings.appeal_email else \
                "发送邮件到大鱼号邮箱(地址请向社群管理员获取)"
            nxt = (f"下一步:通过大鱼号【在线人工客服】提交,或{to},邮件标题:{subject},"
                   f"附上以上 {len(r.materials)} 项材料。")
        out = self._say(t, f"申诉材料包已生成,编号:{appeal_id}\n{nxt}\n"
                           "材料包已加密保存,需要时社群管理员可凭编号导出;如需删除,回复“删除我的资料”。")
        out.appeal_id = appeal_id
        return [out]

    # == commands =======================================================================
    async def _cmd_cancel(self, t: Turn) -> list[Outgoing]:
        active = t.conv.state != "idle" or t.data.get("slots")
        if t.data.get("slots") is not None:
            self.store.record("appeal_abandoned", t.now, t.data.get("prompt_id"))
        self._drop_collected(t.data)
        t.conv.state, t.conv.data = "idle", {}
        if not active:
            return [self._say(t, "当前没有进行中的事项。" + HELP)]
        return [self._say(t, "已取消,本次收集的资料已全部删除。需要时再把提示语发给我即可。"
                             "(下次如果只是想先停一下、保留资料,可以回复“暂停”。)")]

    async def _cmd_pause(self, t: Turn) -> list[Outgoing]:
        if not t.data.get("route"):
            return [self._say(t, "现在没有进行中的申诉,不需要暂停。")]
        t.data["paused"] = True
        return [self._say(t, f"好的,先暂停。已收集的资料会加密保留 {self.settings.expiry_hours:g} 小时,"
                             "期间不再提醒;之后没有继续会自动删除。想继续时直接发送下一项,或回复“进度”。")]

    async def _cmd_restart(self, t: Turn) -> list[Outgoing]:
        prompt_id = t.data.get("prompt_id")
        self._drop_collected(t.data)
        t.conv.data = {"prompt_id": prompt_id} if prompt_id else {}
        if prompt_id and self.kb.group_of(prompt_id) and self.kb.group_of(prompt_id).appeal:
            return self._start_appeal(t)
        t.conv.state = "idle"
        return [self._say(t, "好的,重新开始。请把认证失败时看到的提示语发给我。")]

    async def _cmd_skip(self, t: Turn) -> list[Outgoing]:
        awaiting = t.data.get("awaiting")
        if awaiting in ("military", MILITARY_SLOT):
            t.data["slots"][MILITARY_SLOT] = NOT_APPLICABLE
            return self._ask_next(t, "已跳过。\n")
        if t.conv.state == "collecting":
            return [self._say(t, "这一项是必需的,不能跳过。" + self._current_question(t, short=True))]
        return [self._say(t, "现在没有可以跳过的项目。")]

    async def _cmd_progress(self, t: Turn) -> list[Outgoing]:
        if not t.data.get("route"):
            return [self._say(t, "现在没有进行中的申诉。" + self._current_question(t, short=True))]
        slots = t.data["slots"]
        done = [m.label for m in self._materials(t) if m.slot in slots]
        left = [m.label for m in self._materials(t) if m.slot not in slots]
        text = f"已完成 {len(done)} 项:" + ("、".join(done) or "无") + f"\n还差 {len(left)} 项:" + ("、".join(left) or "无")
        return [self._say(t, text + "\n" + self._current_question(t, short=True))]

    async def _cmd_help(self, t: Turn) -> list[Outgoing]:
        return [self._say(t, HELP + "\n" + self._current_question(t, short=True))]

    async def _cmd_appeal(self, t: Turn) -> list[Outgoing]:
        prompt_id = t.data.get("prompt_id")
        group = self.kb.group_of(prompt_id) if prompt_id else None
        if group and group.appeal:
            return self._start_appeal(t)
        return [self._say(t, "好的。请先把认证失败时看到的提示语发给我,我确认是需要申诉的情况后,再帮你整理材料。")]

    async def _cmd_delete(self, t: Turn) -> list[Outgoing]:
        t.data["before_delete"] = [t.conv.state, t.data.get("awaiting")]
        t.conv.state, t.data["awaiting"] = "delete_confirm", "delete_confirm"
        return [self._say(t, "确定要删除我保存的你的全部资料吗(进行中的对话、已上传的材料、已生成的申诉材料包)?"
                             "回复“确认删除”执行,回复“否”保留。")]

    async def _state_delete_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        if _plain(text) in {"确认删除", "确认", "是", "删除", "确定"}:
            removed = self.delete_user_data(t.msg.sender)
            t.conv.state, t.conv.data = "idle", {}
            return [self._say(t, f"已删除你的全部资料(申诉材料包 {removed} 个)。")]
        t.conv.state, t.data["awaiting"] = t.data.pop("before_delete", ["idle", None])
        return [self._say(t, "好的,没有删除。" + self._current_question(t, short=True))]

    def delete_user_data(self, sender: str) -> int:
        for conv in self.store.conversations_of(sender):
            self._drop_collected(conv.data)
        shutil.rmtree(self.files_dir / self._user_key(sender), ignore_errors=True)
        removed = appeal_package.delete_appeals_of_user(self.settings, sender, self.vault)
        self.store.delete_user(sender)
        return removed

    # == helpers ========================================================================
    def _current_question(self, t: Turn, short: bool) -> str:
        state, awaiting = t.conv.state, t.data.get("awaiting")
        if state == "collecting" and awaiting in SLOTS:
            return ("请继续发送:" + SLOTS[awaiting].ask) if not short else f"(当前在等:{self._label(t, awaiting)})"
        return {
            "choice": "请回复编号选择你看到的提示。",
            "appeal_offer": "需要我帮你整理申诉材料吗?回复“是”或“否”。",
            "route": "你的大鱼号后台是否有【线上反馈】入口?回复“有”或“没有”。",
            "military": MILITARY_QUESTION,
            "confirm": "请回复“确认”生成申诉材料包。",
            "file_slot": "请回复编号说明刚才的文件是哪一项。",
        }.get(state, "请把认证失败时看到的提示语发给我。")

    def _label(self, t: Turn, slot: str) -> str:
        return next((m.label for m in self._materials(t) if m.slot == slot), slot)

    def _drop_collected(self, data: dict) -> None:
        """Delete the working copies of files collected in a conversation."""
        for value in (data.get("slots") or {}).values():
            if isinstance(value, dict) and "file" in value:
                self._delete_ref(value)
        pending = data.get("pending_file")
        if pending:
            self._delete_ref(pending["ref"])

    def _record_match(self, t: Turn, result: MatchResult) -> None:
        if result.tier == "confident":
            self.store.record("match", t.now, result.id)
        elif result.tier == "suggest":
            self.store.record("suggest", t.now, result.id)
        else:
            self.store.record("none", t.now)
            text = redact(" ".join((t.msg.text or "").split()))[:120]
            if text and not v.find_id_numbers(text):
                self.store.record_unmatched(text, t.now)

    def _say(self, t: Turn, text: str, mention: bool = False, prompt_id: int | None = ...) -> Outgoing:
        return Outgoing(chat=t.msg.chat, to=t.msg.sender, text=text, mention=mention and t.msg.room,
                        prompt_id=t.data.get("prompt_id") if prompt_id is ... else prompt_id)

    # == timers =========================================================================
    def on_idle(self, kb: KnowledgeBase, conv: Conversation, now: datetime) -> list[Outgoing]:
        """Reminder after `reminder_minutes`, expiry (and deletion) after `expiry_hours`."""
        self.kb = kb
        idle = now - conv.last_activity
        if idle >= timedelta(hours=self.settings.expiry_hours):
            collecting = conv.data.get("slots") is not None
            self._drop_collected(conv.data)
            if collecting:
                self.store.record("appeal_abandoned", now, conv.data.get("prompt_id"))
            conv.state, conv.data = "idle", {}
            if not collecting or conv.chat != conv.sender:
                return []
            return [Outgoing(chat=conv.chat, to=conv.sender,
                             text=f"申诉材料已经 {self.settings.expiry_hours:g} 小时没有更新,为保护你的隐私,"
                                  "已删除本次收集的资料。需要时再把提示语发给我即可。")]
        if (not conv.reminded and not conv.data.get("paused")
                and idle >= timedelta(minutes=self.settings.reminder_minutes)
                and conv.chat == conv.sender and conv.data.get("route")):
            conv.reminded = True
            left = len([m for m in self.kb.routes[conv.data["route"]].materials
                        if m.slot not in conv.data.get("slots", {})])
            return [Outgoing(chat=conv.chat, to=conv.sender,
                             text=f"还在吗?申诉材料还差 {left} 项,随时发给我就能继续(回复“进度”查看,回复“取消”放弃)。"
                                  f"{self.settings.expiry_hours:g} 小时内没有继续,已收集的资料会被删除。")]
        return []
