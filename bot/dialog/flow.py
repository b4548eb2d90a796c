"""The conversation state machine (transport-neutral).

One `Conversation` per (chat, sender). States and what the bot waits for (`awaiting`):

    idle            nothing pending
    choice          which of the suggested prompts (awaiting "choice")
    appeal_offer    "shall I help you prepare the appeal?" (awaiting "appeal_offer")
    route           is the 线上反馈 entry shown? (awaiting "route")
    collecting      one appeal item (awaiting = the slot name)
    military        does 军人证件 apply? (awaiting "military")
    file_slot       which item is the file just sent? (awaiting "file_slot")
    switch          a new failure prompt arrived mid-appeal: switch to it? (awaiting "switch")
    confirm         the final summary (awaiting "confirm")
    delete_confirm  delete everything about me? (awaiting "delete_confirm")
    quit_confirm    "不整了" mid-appeal: cancel (delete) or pause (keep)? (awaiting "quit_confirm")

Every text is first read by `bot.matching.intents.Reader` (commands, yes/no, questions, small
talk) and, where it matters, by the prompt matcher. In every waiting state the order is the same:
a command -> a question (an FAQ entry, or about the awaited item): answer it and repeat the
pending question in one line -> a new failure prompt at `confident`: offer to switch -> small talk
(human help, not now, thanks) -> the expected answer. A question or remark is never stored as an
item's value. The dialog never parses words itself, and every sentence it says is a named text of
the responses catalogue (knowledge/responses.yaml).

Appeals are collected only in a DM; in rooms the bot answers with remedies and never asks for,
nor echoes, personal data.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from bot.appeals import package as appeal_package
from bot.appeals.crypto import Vault
from bot.appeals.delivery import smtp_enabled
from bot.dialog import validators as v
from bot.dialog import review
from bot.dialog.acts import answer_then_question, choice_number, edit_target
from bot.dialog.extract import extract, kind_of_other_value
from bot.dialog.slots import MILITARY_SLOT, NOT_APPLICABLE, SLOTS
from bot.dialog.supplement import SupplementScene
from bot.kb import KnowledgeBase
from bot.kb.responses import render
from bot.matching import MatchResult, Matcher
from bot.matching.intents import Reader, Reading
from bot.matching.normalize import to_simplified
from bot.messages import Incoming, Outgoing
from bot.privacy import has_mobile_number, redact
from bot.settings import Settings
from bot.store import OPERATOR_STATUSES, Conversation, SqlStore, Writes
from bot.timefmt import local_minutes

log = logging.getLogger(__name__)

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"
OFF_LOOP_BYTES = 2 * 1024 * 1024  # files larger than this are encrypted in a worker thread
FROM_GROUP_WITHIN = timedelta(hours=6)  # a DM "from the group" continues a group remedy this recent
_EDIT = re.compile(r"^(?:修改|改)\s*第?\s*(\d{1,2})\s*项?$")
_PUNCT = re.compile(r"[\s,，.。!！~～、;；:：\"'“”‘’()（）\[\]【】]+")
# States in which an appeal is under way (something collected or about to be).
_APPEAL_STATES = ("route", "collecting", "military", "file_slot", "confirm", "switch", "quit_confirm")
# States whose answer is a yes/no: "可以，材料要准备些啥" answers it and asks something.
_YES_NO_STATES = ("appeal_offer", "route", "military", "confirm")


def _plain(text: str) -> str:
    return _PUNCT.sub("", unicodedata.normalize("NFKC", text or "")).lower()


def awaiting_of(conv: Conversation) -> str | None:
    """What the bot waits for from this user: a slot name, or the name of its question."""
    if conv.state == "idle":
        return None
    if conv.state == "collecting":
        return conv.data.get("awaiting")
    return conv.state


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


class Dialog(SupplementScene):
    def __init__(self, settings: Settings, store: SqlStore, vault: Vault, ocr=None):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.ocr = ocr  # bot.ocr.ScreenshotReader or None
        self.files = store.files  # working copies: `files/<user key>/<random>.enc`, encrypted
        self.kb: KnowledgeBase | None = None
        self.matcher: Matcher | None = None
        self.reader: Reader | None = None

    def use(self, kb: KnowledgeBase, matcher: Matcher, reader: Reader) -> None:
        self.kb, self.matcher, self.reader = kb, matcher, reader

    # == entry point ====================================================================
    async def handle(self, kb: KnowledgeBase, matcher: Matcher, msg: Incoming, conv: Conversation,
                     now: datetime, reader: Reader, writes: Writes | None = None) -> list[Outgoing]:
        self.use(kb, matcher, reader)
        turn = Turn(msg, conv, now, writes=writes if writes is not None else Writes())
        if msg.attachment is None:
            turn.reading = self.reader.read(msg.text or "")
        if msg.room:
            return await self._room(turn)
        return await self._dm(turn)

    def r(self, name: str, **fields) -> str:
        """A named text of the responses catalogue, filled in."""
        return render(self.kb.responses[name], **fields)

    def _match(self, t: Turn) -> MatchResult:
        """The message matched against the prompts, once per turn."""
        if t._match is None:
            t._match = self.matcher.match(t.msg.text or "")
        return t._match

    # == rooms ==========================================================================
    async def _room(self, t: Turn) -> list[Outgoing]:
        msg = t.msg
        if v.find_id_numbers(msg.text):
            # Never echo it; ask them to recall the message.
            return [self._say(t, self.r("room_id_warning"), mention=True)]
        if msg.attachment is not None:
            if not msg.mention:
                return []
            if msg.attachment.kind == "image":
                text = await self._ocr_text(msg.attachment.path)
                if text and v.find_id_numbers(text):
                    return [self._say(t, self.r("room_id_photo_warning"), mention=True)]
                if text:
                    result = self.matcher.match(text)
                    if result.tier != "none" and not result.vague:
                        return self._answer_match(t, result, room=True, source=text)
            return [self._say(t, self.r("room_no_files"), mention=True)]
        if t.conv.state == "choice":
            picked = self._pick_choice(t)
            if picked is not None:
                return picked
        rd = t.reading
        if rd.command == "help" and msg.mention:
            return [self._say(t, self.r("help"), mention=True)]
        result = self._match(t)
        self._record_match(t, result)
        if result.tier == "confident":
            return self._answer_match(t, result, room=True)
        if not msg.mention:
            return []
        if rd.has("appeal_request") or rd.command == "appeal":
            # appeals are collected in a DM only: the hint, and where to go
            known = t.data.get("prompt_id")
            hint = self.r("room_appeal_prompt", prompt=self._prompt_text(known, name=t.data.get("prompt_name"))) \
                if known and self.kb.group_of(known).appeal else ""
            return [self._say(t, self.r("room_appeal_dm", hint=hint), mention=True)]
        small_talk = self._small_talk(t, result, room=True)
        if small_talk is not None:
            return small_talk
        if result.tier == "suggest":
            return self._answer_match(t, result, room=True)
        return [self._say(t, self.r("not_understood"), mention=True)]

    # == direct messages ================================================================
    async def _dm(self, t: Turn) -> list[Outgoing]:
        msg, conv = t.msg, t.conv
        if conv.state == "idle" and not (t.reading and t.reading.command):
            started = self._maybe_start_supplement(t)  # a yes or a file while a supplement is due
            if started is not None:
                if msg.attachment is not None and t.conv.state == "collecting":
                    return started + await self._attachment(t)
                return started
        if msg.attachment is not None:
            return await self._attachment(t)
        text = (msg.text or "").strip()
        if not text:
            return [self._say(t, self.r("no_text", question=self._pending_line(t)))]
        rd = t.reading
        if rd.command != "pause":
            t.data.pop("paused", None)
        if rd.command and not (rd.command == "appeal" and conv.state == "collecting"):
            if conv.state == "quit_confirm" and rd.command in ("pause", "resume"):
                self._leave_quit(t)
            return await getattr(self, f"_cmd_{rd.command}")(t)
        handler = getattr(self, f"_state_{conv.state}", None)
        if handler is None:  # unknown state from a newer/older version: start clean
            conv.state = "idle"
            handler = self._state_idle
        if conv.state not in ("idle", "delete_confirm", "quit_confirm"):
            first = await self._acts_first(t, text, handler)
            if first is not None:
                return first
            interrupted = self._interrupt(t)
            if interrupted is not None:
                return interrupted
        return await handler(t, text)

    async def _acts_first(self, t: Turn, text: str, handler) -> list[Outgoing] | None:
        """What a message does before the shared interruptions: stop, correct an item, a value
        inside a sentence (with whatever else the sentence says), an answer followed by a question."""
        rd, state = t.reading, t.conv.state
        if rd.has("quit") and state in _APPEAL_STATES and not rd.question:
            return self._ask_quit(t)
        if rd.has("edit") and t.data.get("route") and state in ("collecting", "military", "file_slot", "confirm"):
            slots = [m.slot for m in self._materials(t)]
            target = edit_target(rd, text, slots)
            if target is not None:
                return self._edit(t, target)
            if state == "confirm" or rd.chit_chat:
                return [self._say(t, self.r("edit_which"))]
        if state == "collecting":
            slot = t.data.get("awaiting")
            spec = SLOTS.get(slot)
            # a new failure prompt said plainly is not a value (the interruptions offer to switch)
            prompt_said = len(rd.text) >= 6 and not rd.chit_chat and self._match(t).tier == "confident"
            if spec is not None and spec.kind == "text" and slot != "error_prompt" and slot in self.kb.items \
                    and not prompt_said:
                taken = self._take_value(t, slot, text)
                if taken is not None:
                    return taken
        if state in _YES_NO_STATES:
            split = answer_then_question(self.reader, text)
            if split is not None:
                t.reading = split.answer
                replies = await handler(t, split.answer.text)
                answer = self._faq_answer(t, split.question)
                if answer and replies:
                    self._insert_before_pending(t, replies[-1], answer)
                return replies
        return None

    def _insert_before_pending(self, t: Turn, reply: Outgoing, answer: str) -> None:
        """Put an answer to the creator's question just before the question the reply ends with."""
        pending = self._pending_line(t)
        text = reply.text
        for line in (pending, self.kb.items["route"].ask if t.conv.state == "route" else ""):
            if line and text.endswith(line):
                reply.text = text[:-len(line)].rstrip() + "\n" + answer + "\n" + line
                return
        reply.text = text + "\n" + answer

    def _take_value(self, t: Turn, slot: str, text: str) -> list[Outgoing] | None:
        """The awaited item's value found inside the message (never the whole message unless it is
        only the value); the rest of the message is read for a question. None: no value here."""
        rd = t.reading
        label = self._label(t, slot)
        bare_ok = not (rd.command or rd.question or rd.faq or rd.chit_chat or rd.unsure
                       or rd.intents - {"thanks", "greeting", "edit"})  # an edit naming no item was handled before
        found = extract(slot, text, bare_ok=bare_ok)
        other = kind_of_other_value(slot, text)
        if other and (found is None or found.value is None):  # an ID number at the name, a mobile at the ID
            key = "id_number_in_wrong_item" if other == "id_number" else "mobile_in_wrong_item"
            return self._failed(t, slot, self.r(key, item=label))
        if found is None or (found.value is None and found.error is None):
            return None
        if found.value is None:
            return self._failed(t, slot, found.error)
        t.data["slots"][slot] = found.value
        t.data.get("failures", {}).pop(slot, None)
        if slot == "id_number":
            said = self.r("recorded_id", masked=v.mask_id_number(found.value))
        elif found.bare:
            said = self.r("recorded")
        else:
            said = self.r("recorded_value", item=label, value=found.value)
        extra = ""
        if found.rest:
            rest = self.reader.read(found.rest)
            if rest.question or rest.faq:
                extra = self._faq_answer(t, rest) or self.r("question_not_known")
        replies = self._ask_next(t, said + "\n" + (extra + "\n" if extra else ""))
        return replies

    # -- stopping and correcting, in plain words ---------------------------------------------
    def _ask_quit(self, t: Turn) -> list[Outgoing]:
        """"不整了" mid-appeal: ask once whether to cancel (delete) or pause (keep)."""
        t.data["before_quit"] = [t.conv.state, t.data.get("awaiting")]
        t.conv.state, t.data["awaiting"] = "quit_confirm", "quit_confirm"
        done = len(t.data.get("slots") or {}) + (1 if t.data.get("pending_file") else 0) + len(
            t.data.get("queued_files") or [])
        return [self._say(t, self.r("quit_ask", done=done, expiry_hours=f"{self.settings.expiry_hours:g}"))]

    def _leave_quit(self, t: Turn) -> None:
        t.conv.state, t.data["awaiting"] = t.data.pop("before_quit", ["idle", None])

    async def _state_quit_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        if rd.has("quit") or rd.has("drop_data"):
            return await self._cmd_cancel(t)
        if rd.has("keep_data") or rd.has("not_now"):
            self._leave_quit(t)
            return await self._cmd_pause(t)
        if rd.polarity is False:  # "不取消" / "不了": go on
            self._leave_quit(t)
            return [self._say(t, self.r("resumed", question=self._pending_line(t)))]
        self._not_understood(t, text)
        return [self._say(t, self.r("quit_reask"))]

    def _edit(self, t: Turn, slot: str) -> list[Outgoing]:
        """Go back to an item (its old value stays until a new one is given); then on to where the
        creator was (the summary, when they were there)."""
        if t.conv.state == "confirm":
            t.data["editing"] = True
        pending = t.data.pop("pending_file", None)
        if pending:  # the file being asked about waits in the queue
            t.data.setdefault("queued_files", []).insert(0, {"ref": pending["ref"], "kind": pending.get("kind")})
        t.data.pop("before_quit", None)
        label = self._label(t, slot)
        if slot == MILITARY_SLOT:
            t.conv.state, t.data["awaiting"] = "military", "military"
            return [self._say(t, self.r("edit_item", item=label, ask=self.r("ask_military")))]
        t.conv.state, t.data["awaiting"] = "collecting", slot
        return [self._say(t, self.r("edit_item", item=label, ask=self._ask(slot)))]

    def _not_understood(self, t: Turn, text: str) -> None:
        """A message the bot could not use while it waited for an answer: recorded (redacted) for operators."""
        t.writes.record_not_understood(text, t.conv.state, awaiting_of(t.conv), t.now)

    def _interrupt(self, t: Turn) -> list[Outgoing] | None:
        """What comes before the expected answer in every waiting state (see the module doc)."""
        rd, state, awaiting = t.reading, t.conv.state, t.data.get("awaiting")
        pending = self._pending_item(t)
        if rd.has("human"):  # asking for a person comes before anything else
            return self._human(t, then=self._pending_line(t, again=True))
        # 1. a question: out of scope, an FAQ entry, or one about the awaited item
        if rd.has("out_of_scope") and rd.question and rd.polarity is None and not rd.item:
            return [self._say(t, self.r("out_of_scope") + "\n" + self._pending_line(t, again=True))]
        if rd.faq or (rd.question and pending and state not in ("choice", "switch")):
            answer = self._faq_answer(t, rd)
            if answer:
                return [self._say(t, answer + "\n" + self._pending_line(t, again=True))]
        # 2. a new failure prompt, said plainly (except where a prompt is the expected answer)
        if awaiting != "error_prompt" and state != "choice" and len(rd.text) >= 6 and not rd.chit_chat:
            result = self._match(t)
            if result.tier == "confident" and state == "appeal_offer" and result.id == t.data.get("prompt_id"):
                # the same prompt pasted again: neither a yes nor a no (its "是" is not an answer)
                prompt = self.kb.prompt(result.id)
                return [self._say(t, self.r("same_prompt_again", prompt=prompt.text if prompt else "",
                                            question=self.r("ask_appeal_offer")))]
            if result.tier == "confident":
                self._record_match(t, result)
                return self._new_prompt(t, result)
        # 3. small talk that is not an answer
        if rd.has("who_are_you"):
            return [self._say(t, self.r("who_are_you") + "\n" + self._pending_line(t, again=True))]
        if rd.has("not_now") and state in _APPEAL_STATES:
            return [self._say(t, self.r("not_now_collecting", expiry_hours=f"{self.settings.expiry_hours:g}"))]
        if rd.question and state in ("appeal_offer", "route", "military", "confirm") and rd.polarity is None \
                and not rd.unsure:
            return [self._say(t, self.r("question_not_known") + "\n" + self._pending_line(t, again=True))]
        return None

    def _pending_item(self, t: Turn) -> str | None:
        state = t.conv.state
        if state == "collecting":
            return t.data.get("awaiting")
        if state == "route":
            return "route"
        if state == "military":
            return MILITARY_SLOT
        return None

    def _faq_answer(self, t: Turn, rd: Reading) -> str | None:
        """The answer to the question, about the item it names or else the awaited one."""
        item_slot = rd.item if rd.item not in (None, "this") else self._pending_item(t)
        item = self.kb.items.get(item_slot) if item_slot else None
        faq = next((f for f in self.kb.faq if f.id == rd.faq), None)
        fields = self._faq_fields(item)
        if faq is not None:
            if "{item" not in faq.answer:
                return render(faq.answer, **fields)
            if item is not None:
                key = {"why_item": "why", "what_item": "what", "where_item": "where"}.get(faq.id)
                if key and not getattr(item, key):
                    return self._item_help(item)
                return render(faq.answer, **fields)
        if item is not None and rd.question:
            return self._item_help(item)
        return None

    @staticmethod
    def _item_help(item) -> str:
        return "\n".join(x for x in (item.what or item.why, item.where) if x)

    def _faq_fields(self, item) -> dict:
        email = self.settings.appeal_email
        routes = self.kb.routes
        return {
            "item": item.label if item else "", "item_why": item.why if item else "",
            "item_what": (item.what or item.why) if item else "",
            "item_where": (item.where or item.what or item.why) if item else "",
            "appeal_email": email or self.r("email_unknown"),
            "expiry_hours": f"{self.settings.expiry_hours:g}",
            "reminder_minutes": f"{self.settings.reminder_minutes:g}",
            "online_materials": "".join(f"{CIRCLED[i]}{m.label};" for i, m in enumerate(routes["online"].materials)),
            "email_materials": "".join(f"{CIRCLED[i]}{m.label};" for i, m in enumerate(routes["email"].materials)),
            "delivery": self.r("delivery_smtp", email=email) if smtp_enabled(self.settings)
            else self.r("delivery_operator"),
        }

    # -- idle and matching -----------------------------------------------------------------
    async def _state_idle(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        result = self._match(t)
        self._record_match(t, result, unmatched=False)  # listed for operators only if not understood
        if result.tier == "confident":
            return self._answer_match(t, result, room=False)
        if rd.has("from_group"):
            return self._from_group(t)
        prompt_id = t.data.get("prompt_id")
        group = self.kb.group_of(prompt_id) if prompt_id else None
        if rd.has("appeal_request") and group is not None and not group.appeal:
            return self._appeal_not_for_prompt(t, prompt_id)
        if rd.has("out_of_scope"):
            return [self._say(t, self.r("out_of_scope"))]
        if rd.faq and (rd.question or rd.faq_score >= 0.9):
            answer = self._faq_answer(t, rd)
            if answer:
                return [self._say(t, answer)]
        small_talk = self._small_talk(t, result, room=False)
        if small_talk is not None:
            return small_talk
        if result.tier == "suggest":
            return self._answer_match(t, result, room=False)
        self._record_unmatched(t)
        if len(_plain(text)) <= 4 and not _plain(text).isdigit():
            return [self._say(t, self.r("short_hello"))]
        return [self._say(t, self.r("not_understood"))]

    def _from_group(self, t: Turn) -> list[Outgoing]:
        """A DM sent on from a group: when this creator got a remedy in a group in the last hours,
        go on from that prompt; else a greeting and what to send."""
        recent = [c for c in self.store.conversations_of(t.msg.sender)
                  if c.chat != c.sender and c.data.get("prompt_id") and self.kb.prompt(c.data["prompt_id"])
                  and c.last_activity and t.now - c.last_activity <= FROM_GROUP_WITHIN]
        if not recent:
            return [self._say(t, self.r("from_group"))]
        room = max(recent, key=lambda c: c.last_activity)
        prompt_id = room.data["prompt_id"]
        t.data["prompt_id"] = prompt_id
        if room.data.get("prompt_name"):
            t.data["prompt_name"] = room.data["prompt_name"]
        group = self.kb.group_of(prompt_id)
        shown = self._prompt_text(prompt_id, name=t.data.get("prompt_name"))
        if group.appeal:
            t.conv.state = "appeal_offer"
            question = self.r("ask_appeal_offer")
        else:
            question = self._render(group.chat or group.remedy, name=t.data.get("prompt_name"))
        return [self._say(t, self.r("from_group_continue", prompt=shown, question=question), prompt_id=prompt_id)]

    def _appeal_not_for_prompt(self, t: Turn, prompt_id: int) -> list[Outgoing]:
        """"申诉" after a prompt with no appeal route: what its remedy offers instead (the prompt is kept)."""
        group = self.kb.group_of(prompt_id)
        steps = self._render(group.chat or group.remedy, name=t.data.get("prompt_name"))
        return [self._say(t, self.r("appeal_not_for_prompt", prompt=self._prompt_text(
            prompt_id, name=t.data.get("prompt_name")), remedy=steps), prompt_id=prompt_id)]

    def _small_talk(self, t: Turn, result: MatchResult, room: bool) -> list[Outgoing] | None:
        """Idle messages that are not a failure prompt: help, scope, thanks, a vague failure."""
        rd = t.reading
        if rd.has("human"):
            return self._human(t, room)
        if rd.has("who_are_you"):
            return [self._say(t, self.r("who_are_you"), mention=room)]
        clarifying = t.data.pop("clarifying", False)
        if rd.has("no_prompt") or (clarifying and rd.polarity is False and rd.chit_chat):
            # "No prompt at all, it just went back / got stuck" is prompt 15's case.
            no_prompt = next((p.id for p in self.kb.prompts if self.kb.groups[p.group].name == "abnormal_failure"), None)
            if no_prompt:
                return self._remedy(t, no_prompt, room)
        if rd.has("out_of_scope") and result.tier != "confident":
            return [self._say(t, self.r("out_of_scope"), mention=room)]
        if result.vague:
            t.data["clarifying"] = True
            t.conv.state = "idle"
            return [self._say(t, self.r("clarify"), mention=room, prompt_id=None)]
        if rd.chit_chat and rd.has("thanks"):
            return [self._say(t, self.r("thanks"), mention=room)]
        if rd.chit_chat and rd.has("greeting"):
            return [self._say(t, self.r("greeting"), mention=room)]
        if rd.chit_chat and rd.polarity is not None:
            return [self._say(t, self.r("ok_idle"), mention=room)]
        return None

    def _answer_match(self, t: Turn, result: MatchResult, room: bool, source: str | None = None) -> list[Outgoing]:
        if result.tier == "suggest":
            ids = [result.id] + [a["id"] for a in result.alternatives[:2]]
            lines = "\n".join(f"{i + 1}. {self._prompt_text(pid, source)}" for i, pid in enumerate(ids))
            t.conv.state = "choice"
            t.data["candidates"] = ids
            return [self._say(t, self.r("choice_list", options=lines), mention=room, prompt_id=None)]
        return self._remedy(t, result.id, room, source)

    def _prompt_text(self, prompt_id: int, source: str | None = None, name: str | None = None) -> str:
        """The prompt as the creator saw it: prompt 14's 【XXX】 becomes the name they typed."""
        prompt = self.kb.prompt(prompt_id)
        if not prompt.wildcard:
            return prompt.text
        name = name or (_wildcard_value(prompt.text, prompt.wildcard, source) if source else None)
        return prompt.text.replace(prompt.wildcard, f"【{name}】" if name else "")

    def _remedy(self, t: Turn, prompt_id: int, room: bool, source: str | None = None) -> list[Outgoing]:
        prompt = self.kb.prompt(prompt_id)
        group = self.kb.groups[prompt.group]
        shown = self._prompt_text(prompt_id, source if source is not None else t.msg.text)
        name = _wildcard_value(prompt.text, prompt.wildcard, source or t.msg.text or "") if prompt.wildcard else None
        steps = self._render(group.chat or group.remedy, name=name)
        text = self.r("remedy", prompt=shown, remedy=steps)
        t.data.pop("candidates", None)
        t.data.pop("clarifying", None)
        t.data["prompt_id"] = prompt_id
        if name:
            t.data["prompt_name"] = name
        if room:
            t.conv.state = "idle"
            t.conv.data = {"prompt_id": prompt_id}
            if group.appeal:
                text += "\n" + self.r("room_appeal_hint")
            return [self._say(t, text, mention=True, prompt_id=prompt_id)]
        if group.appeal:
            t.conv.state = "appeal_offer"
            text += "\n" + self.r("appeal_offer")
        else:
            t.conv.state = "idle"
            text += "\n" + self.r("details_hint")
        return [self._say(t, text, prompt_id=prompt_id)]

    def _render(self, text: str, name: str | None = None) -> str:
        email = self.settings.appeal_email
        return render(text, appeal_email=f"({email})" if email else self.r("email_unknown_paren"),
                      name=f"【{name}】" if name else "")

    def _pick_choice(self, t: Turn) -> list[Outgoing] | None:
        candidates = t.data.get("candidates") or []
        n = choice_number(t.msg.text, len(candidates))
        if n:
            return self._remedy(t, candidates[n - 1], room=t.msg.room)
        return None

    async def _state_choice(self, t: Turn, text: str) -> list[Outgoing]:
        picked = self._pick_choice(t)
        if picked is not None:
            return picked
        result = self._match(t)
        rd = t.reading
        if result.tier == "none" and not (rd.intents or rd.faq or rd.command or rd.polarity is not None):
            # neither a pick nor anything else: the list stays open until answered or replaced
            self._not_understood(t, text)
            return [self._say(t, self.r("reask", question=self.r("ask_choice")), prompt_id=None)]
        t.conv.state = "idle"
        t.data.pop("candidates", None)
        return await self._state_idle(t, text)

    # -- a new prompt in the middle of something -------------------------------------------
    def _collected(self, t: Turn) -> bool:
        return bool(t.data.get("slots")) or bool(t.data.get("pending_file"))

    def _new_prompt(self, t: Turn, result: MatchResult) -> list[Outgoing]:
        if not self._collected(t):
            # Nothing to lose: answer the new prompt as if idle.
            self._drop_collected(t.writes, t.data)
            t.conv.data = {}
            return self._remedy(t, result.id, room=False)
        t.data["switch"] = {"prompt_id": result.id, "back": [t.conv.state, t.data.get("awaiting")],
                            "shown": self._prompt_text(result.id, t.msg.text)}
        t.conv.state, t.data["awaiting"] = "switch", "switch"
        return [self._say(t, self.r("switch_offer", prompt=t.data["switch"]["shown"]), prompt_id=result.id)]

    async def _state_switch(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        pending = t.data.get("switch") or {}
        n = choice_number(text, 3)
        choice = str(n) if n else ""
        if not choice:
            if rd.has("drop_data"):
                choice = "2"
            elif rd.has("keep_data") or rd.polarity is True:
                choice = "1"
            elif rd.polarity is False:
                choice = "3"
        if choice not in ("1", "2", "3") or not pending:
            self._not_understood(t, text)
            return [self._say(t, self.r("switch_reask"))]
        t.data.pop("switch", None)
        t.conv.state, t.data["awaiting"] = pending["back"]
        if choice == "3":
            return [self._say(t, self.r("switch_stay", question=self._pending_line(t)))]
        if choice == "2":
            self._drop_collected(t.writes, t.data)
            if t.data.get("slots") is not None:
                t.writes.record("appeal_abandoned", t.now, t.data.get("prompt_id"))
            t.conv.state, t.conv.data = "idle", {}
            return self._remedy(t, pending["prompt_id"], room=False)
        # keep what was collected, go on under the new prompt (its remedy only when it differs)
        same_group = self.kb.group_of(t.data.get("prompt_id") or 0) == self.kb.group_of(pending["prompt_id"])
        t.data["prompt_id"] = pending["prompt_id"]
        prompt = self.kb.prompt(pending["prompt_id"])
        group = self.kb.groups[prompt.group]
        steps = "" if same_group else self._render(group.chat or group.remedy, name=t.data.get("prompt_name"))
        text = self.r("switch_kept", prompt=pending["shown"], remedy=steps).strip()
        return [self._say(t, text + "\n" + self._pending_line(t, again=True))]

    # -- appeal offer and route ------------------------------------------------------------
    async def _state_appeal_offer(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        if rd.polarity is True and not rd.has("not_now"):
            return self._start_appeal(t)
        if rd.polarity is False or rd.has("not_now"):
            t.conv.state = "idle"
            return [self._say(t, self.r("appeal_declined"))]
        if rd.unsure:
            return [self._say(t, self.r("appeal_offer_explain"))]
        if rd.chit_chat and rd.has("thanks"):
            return [self._say(t, self.r("thanks_then", question=self.r("ask_appeal_offer")))]
        return await self._maybe_new_prompt(t, text, self.r("ask_appeal_offer"))

    async def _maybe_new_prompt(self, t: Turn, text: str, reask: str) -> list[Outgoing]:
        """An unexpected answer may be a failure prompt said loosely: answer that instead."""
        result = self._match(t)
        if result.tier == "suggest" and not self._collected(t):
            self._record_match(t, result)
            t.conv.data = {}
            return self._answer_match(t, result, room=False)
        self._not_understood(t, text)
        return [self._say(t, self.r("reask", question=reask))]

    def _start_appeal(self, t: Turn) -> list[Outgoing]:
        t.conv.state = "route"
        t.data.update(slots={}, failures={}, started_at=t.now.isoformat())
        t.writes.record("appeal_started", t.now, t.data.get("prompt_id"))
        return [self._say(t, self.r("appeal_start", question=self.kb.items["route"].ask))]

    async def _state_route(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        if rd.unsure or (rd.polarity is None and rd.has("not_now") is False and rd.question):
            item = self.kb.items["route"]
            return [self._say(t, self._item_help(item) + "\n" + self._pending_line(t, again=True))]
        if rd.polarity is None:
            return await self._maybe_new_prompt(t, text, self.kb.items["route"].ask)
        if rd.consent_only:  # "好的,帮我弄吧" agrees, but does not say whether the entry is there
            return [self._say(t, self.r("reask_fact", question=self.kb.items["route"].ask))]
        route = "online" if rd.polarity else "email"
        t.data["route"] = route
        r = self.kb.routes[route]
        items = "\n".join(f"{CIRCLED[i]}{m.label}" for i, m in enumerate(r.materials))
        return [self._say(t, self.r(f"route_{route}", count=len(r.materials), items=items)), *self._ask_next(t)]

    # -- collecting ------------------------------------------------------------------------
    def _materials(self, t: Turn):
        materials = self.kb.routes[t.data["route"]].materials
        asked = (t.data.get("supplement") or {}).get("items")
        return [m for m in materials if m.slot in asked] if asked else materials

    def _missing(self, t: Turn) -> list:
        slots = t.data.get("slots", {})
        return [m for m in self._materials(t) if m.slot not in slots]

    def _ask(self, slot: str) -> str:
        return self.kb.items[slot].ask

    def _ask_next(self, t: Turn, prefix: str = "") -> list[Outgoing]:
        missing = self._missing(t)
        if t.data.pop("editing", False) or not missing:
            return self._summary(t, prefix)
        m = missing[0]
        total = len(self._materials(t))
        number = f"({total - len(missing) + 1}/{total}) "
        if m.slot == MILITARY_SLOT:
            t.conv.state, t.data["awaiting"] = "military", "military"
            return [self._say(t, prefix + number + self.r("ask_military"))]
        t.conv.state, t.data["awaiting"] = "collecting", m.slot
        if m.slot == "error_prompt" and t.data.get("prompt_id"):
            shown = self._prompt_text(t.data["prompt_id"], name=t.data.get("prompt_name"))
            return [self._say(t, prefix + number + self.r("ask_error_prompt_known", prompt=shown))]
        return [self._say(t, prefix + number + self._ask(m.slot))]

    async def _state_collecting(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        slot = t.data.get("awaiting")
        spec = SLOTS.get(slot)
        if spec is None or slot not in self.kb.items:
            return self._ask_next(t)
        label = self.kb.items[slot].label
        if slot == "error_prompt":
            return self._take_error_prompt(t, text)
        if rd.unsure:
            return [self._say(t, self._item_help(self.kb.items[slot]) + "\n" + self._pending_line(t, again=True))]
        if rd.chit_chat or rd.consent_only or (rd.polarity is not None and len(_plain(text)) <= 4):
            if rd.polarity is False:
                return [self._say(t, self.r("item_required", item=label,
                                            expiry_hours=f"{self.settings.expiry_hours:g}"))]
            return [self._say(t, self.r("reask_item", item=label))]
        if spec.kind != "text":
            return self._failed(t, slot, self.r("needs_file", kind=self._kind_word(spec.kind)))
        if slot != "id_number" and v.find_id_numbers(text):
            return self._failed(t, slot, self.r("id_number_in_wrong_item", item=label))
        if slot != "contact" and has_mobile_number(text):
            return self._failed(t, slot, self.r("mobile_in_wrong_item", item=label))
        # No value of this item's kind in the message (values are taken before: _take_value): a
        # sentence is never stored as a value. Asked again, saying what was missing.
        self._not_understood(t, text)
        failures = t.data.setdefault("failures", {})
        failures[slot] = failures.get(slot, 0) + 1
        text = self.r("value_missing", item=label, question=self._ask(slot))
        if failures[slot] >= self.settings.max_validation_failures:
            text += "\n\n" + self.r("too_many_failures")
        return [self._say(t, text)]

    @staticmethod
    def _kind_word(kind: str) -> str:
        return {"video": "视频", "image": "图片"}.get(kind, "文件")

    def _take_error_prompt(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        prompt_id = t.data.get("prompt_id") or 0
        prompt = self.kb.prompt(prompt_id)
        if prompt and rd.polarity is True and rd.chit_chat:
            value = self._prompt_text(prompt.id, name=t.data.get("prompt_name"))
        else:
            value = " ".join(text.split())
            if v.find_id_numbers(value) or has_mobile_number(value):
                return self._failed(t, "error_prompt", self.r("id_number_in_wrong_item", item=self.kb.items["error_prompt"].label))
            if len(value) < 4 or len(value) > 300 or rd.polarity is False and rd.chit_chat:
                return self._failed(t, "error_prompt", self.r("error_prompt_invalid"))
            result = self._match(t)
            if result.tier == "confident":  # the creator typed the prompt: it is now the case's prompt
                t.data["prompt_id"] = result.id
        t.data["slots"]["error_prompt"] = value
        return self._ask_next(t, self.r("recorded") + "\n")

    def _failed(self, t: Turn, slot: str, error: str) -> list[Outgoing]:
        failures = t.data.setdefault("failures", {})
        failures[slot] = failures.get(slot, 0) + 1
        text = f"{error}\n{self._question_for(t, slot)}"
        if failures[slot] >= self.settings.max_validation_failures:
            text += "\n\n" + self.r("too_many_failures")
        return [self._say(t, text)]

    def _question_for(self, t: Turn, slot: str) -> str:
        if slot == MILITARY_SLOT and t.conv.state == "military":
            return self.r("ask_military")
        return self._ask(slot)

    async def _state_military(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        if rd.unsure:
            item = self.kb.items[MILITARY_SLOT]
            return [self._say(t, item.why + "\n" + self._pending_line(t, again=True))]
        if rd.polarity is None:
            return [self._say(t, self.r("reask", question=self.r("ask_military")))]
        if rd.consent_only:
            return [self._say(t, self.r("reask_fact", question=self.r("ask_military")))]
        if rd.polarity is False:
            t.data["slots"][MILITARY_SLOT] = NOT_APPLICABLE
            return self._ask_next(t)
        t.conv.state, t.data["awaiting"] = "collecting", MILITARY_SLOT
        return [self._say(t, self.r("ask_military_docs", ask=self._ask(MILITARY_SLOT)))]

    # -- files ---------------------------------------------------------------------------
    async def _attachment(self, t: Turn) -> list[Outgoing]:
        att = t.msg.attachment
        if not Path(att.path).is_file():  # a directory, a vanished download, ...
            return [self._say(t, self.r("file_not_received", question=self._pending_line(t)))]
        state, awaiting = t.conv.state, t.data.get("awaiting")
        spec = SLOTS.get(awaiting) if state == "collecting" else None
        # A photo or video may arrive labelled as a file, or as the other kind: content decides.
        if spec is not None and spec.kind != "text":
            check = await self._check_file_async(att.path, spec.kind)
            if check.ok or att.kind in (spec.kind, "file"):
                return await self._fill_file_slot(t, awaiting, att.path, check)
            if spec.kind == "video" and att.kind == "image":
                if not self._file_options(t, "image"):
                    return [self._say(t, self.r("video_needed", question=self._pending_line(t)))]
                kept = await self._keep_pending(t, att.path, att.kind)  # said so, and kept for its own item
                kept[0].text = self.r("video_not_image") + "\n" + kept[0].text
                return kept
        if state in ("collecting", "military", "confirm", "route", "file_slot", "switch") and t.data.get("route"):
            return await self._keep_pending(t, att.path, att.kind)
        if att.kind == "image" and state not in ("delete_confirm",):
            check = await self._check_file_async(att.path, "image")
            if not check.ok:  # not a picture at all (a text file, a broken download): say so
                return [self._say(t, self.r("image_not_picture", error=check.error))]
            text = await self._ocr_text(att.path)
            if text is None:
                return [self._say(t, self.r("image_unreadable"))]
            result = self.matcher.match(text)
            self._record_match(t, result)
            if result.tier == "none" or result.vague:
                return [self._say(t, self.r("image_no_prompt"))]
            if state in _APPEAL_STATES and result.tier == "confident":
                return self._new_prompt(t, result)
            return self._answer_match(t, result, room=False, source=text)
        return [self._say(t, self.r("file_idle"))]

    async def _check_file_async(self, path: Path, kind: str) -> v.Validation:
        # Decoding a video (or a big photo) takes long enough to hold every chat.
        return await _off_loop_if_big(path, self._check_file, path, kind, always=kind == "video")

    def _check_file(self, path: Path, kind: str) -> v.Validation:
        max_bytes = int(self.settings.max_attachment_mb * 1024 * 1024)
        if kind == "image":
            return v.validate_image(path, max_bytes=max_bytes)
        return v.validate_video(path, max_bytes=max_bytes)

    async def _fill_file_slot(self, t: Turn, slot: str, path: Path, check: v.Validation) -> list[Outgoing]:
        want = SLOTS[slot].kind
        if not check.ok:
            return self._failed(t, slot, check.error)
        ref = await self._store_file_async(t, path, check)
        t.data["slots"][slot] = ref
        t.data.get("failures", {}).pop(slot, None)
        note = ""
        if slot in review.ID_PHOTO_SLOTS:
            await self._look_at_photo(ref, path)
            if ref.get("seen"):
                note = self.r("photo_seen", what=ref["seen"])
        if slot == "taobao_screenshot":
            text = await self._ocr_text(path, keep=True)
            if text:
                ref["ocr_text"] = text[:2000]
                result = self.matcher.match(text)
                if result.tier != "none" and not result.vague:
                    ref["ocr_prompt_id"] = result.id
                    if "error_prompt" not in t.data["slots"]:
                        t.data["prompt_id"] = result.id
                        note = self.r("screenshot_prompt_note", prompt=self._prompt_text(result.id, text))
        return self._ask_next(t, self.r("file_received", kind=self._kind_word(want), note=note) + "\n")

    async def _keep_pending(self, t: Turn, path: Path, kind: str) -> list[Outgoing]:
        """A file that is not the awaited item: kept, and the creator asked which item it is. Files
        sent in a row each wait their turn (none is replaced or dropped without a word)."""
        want = "video" if kind in ("video", "file") else "image"
        check = await self._check_file_async(path, want)
        if not check.ok and kind == "file":
            want, check = "image", await self._check_file_async(path, "image")
        if not check.ok:
            return [self._say(t, check.error + "\n" + self._pending_line(t))]
        ref = await self._store_file_async(t, path, check)
        if not self._file_options(t, want):
            self._delete_ref(t.writes, ref)
            return [self._say(t, self.r("file_unused", question=self._pending_line(t)))]
        if want == "image":
            await self._look_at_photo(ref, path)
        t.data["file_seq"] = t.data.get("file_seq", 0) + 1
        entry = {"ref": ref, "kind": want, "n": t.data["file_seq"]}
        if t.data.get("pending_file"):  # still asking about an earlier one: this one waits in order
            t.data.setdefault("queued_files", []).append(entry)
            return [self._say(t, self.r("file_queued", kind=self._kind_word(want), n=entry["n"]))]
        return self._ask_file(t, entry, [t.conv.state, t.data.get("awaiting")])

    def _file_options(self, t: Turn, kind: str) -> list:
        return [m for m in (self._missing(t) or self._materials(t)) if SLOTS[m.slot].kind == kind]

    def _ask_file(self, t: Turn, entry: dict, back: list) -> list[Outgoing]:
        options = self._file_options(t, entry["kind"]) or [
            m for m in self._materials(t) if SLOTS[m.slot].kind == entry["kind"]]
        t.data["pending_file"] = {**entry, "options": [m.slot for m in options], "back": back}
        t.conv.state, t.data["awaiting"] = "file_slot", "file_slot"
        lines = "\n".join(f"{i + 1}. {m.label}" for i, m in enumerate(options))
        seen = entry["ref"].get("seen")
        return [self._say(t, self.r("file_which_numbered", n=entry["n"], kind=self._kind_word(entry["kind"]),
                                    seen=self.r("photo_seen", what=seen) if seen else "", options=lines))]

    async def _state_file_slot(self, t: Turn, text: str) -> list[Outgoing]:
        pending = t.data.get("pending_file") or {}
        options = pending.get("options", [])
        choice = choice_number(text, len(options))
        if choice is None:
            self._not_understood(t, text)
            return [self._say(t, self.r("file_which_reask", count=len(options)))]
        t.data.pop("pending_file")
        said = ""
        if choice == 0:
            self._delete_ref(t.writes, pending["ref"])
            said = self.r("file_discarded", question="").strip()  # the question follows below
        else:
            slot = options[choice - 1]
            old = t.data["slots"].get(slot)
            if isinstance(old, dict):
                self._delete_ref(t.writes, old)
                said = self.r("updated")
            else:
                said = self.r("recorded_value", item=self._label(t, slot), value=self.r(
                    "file_ordinal", kind=self._kind_word(pending.get("kind", "image")), n=pending.get("n", 1)))
            t.data["slots"][slot] = pending["ref"]
        queue = t.data.get("queued_files") or []
        if queue:  # the next file sent in a row
            nxt = queue.pop(0)
            if not queue:
                t.data.pop("queued_files", None)
            if not self._file_options(t, nxt["kind"]) and choice:
                pass  # every item of its kind is filled: still ask (it may replace one)
            out = self._ask_file(t, nxt, pending["back"])
            out[0].text = said + "\n" + out[0].text
            return out
        t.data.pop("file_seq", None)
        t.conv.state, t.data["awaiting"] = pending["back"]
        if choice == 0:
            return [self._say(t, self.r("file_discarded", question=self._pending_line(t)))]
        if t.conv.state == "confirm":
            return self._summary(t, said + "\n")
        if t.conv.state == "collecting" and t.data.get("awaiting") in t.data["slots"]:
            return self._ask_next(t, said + "\n")  # the awaited item was just filled by the file
        if t.conv.state != "collecting":
            return self._ask_next(t, said + "\n")
        return [self._say(t, said + "\n" + self.r("resume_item", item=self._label(t, t.data["awaiting"])))]

    async def _look_at_photo(self, ref: dict, path: Path) -> None:
        """What OCR sees in a photo (ID side, and hashes to compare with what was typed); nothing
        without OCR."""
        if self.ocr is None:
            return
        review.look(ref, await self._ocr_text(path))

    async def _store_file_async(self, t: Turn, path: Path, check: v.Validation) -> dict:
        # Encrypting a video of tens of MB would hold every chat.
        return await _off_loop_if_big(path, self._store_file, t, path, check)

    def _store_file(self, t: Turn, path: Path, check: v.Validation) -> dict:
        ref_file = f"{self._user_key(t.msg.sender)}/{secrets.token_hex(8)}.enc"
        self.files.write(f"files/{ref_file}", self.vault.encrypt(Path(path).read_bytes()))
        ref = {"file": ref_file, "kind": check.kind or "file", "format": check.value}
        if check.width:
            ref["size"] = f"{check.width}×{check.height}"
        if check.duration_seconds:
            ref["seconds"] = round(check.duration_seconds, 1)
        return ref

    def _delete_ref(self, writes: Writes, ref: dict) -> None:
        """Delete a working file once the state that dropped it is committed."""
        writes.delete_file_later(f"files/{ref['file']}")

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
            kind = self._kind_word(value.get("kind"))
            extra = value.get("seen") or value.get("size") or (
                self.r("media_seconds", seconds=value["seconds"]) if value.get("seconds") else "")
            return self.r("file_described", kind=kind, extra=f"({extra})" if extra else "")
        if slot == "id_number":
            return v.mask_id_number(value)
        return str(value)

    def _summary(self, t: Turn, prefix: str = "") -> list[Outgoing]:
        t.conv.state, t.data["awaiting"] = "confirm", "confirm"
        # The package's id is chosen (and committed) before 确认: a redelivered 确认 writes the
        # same package again instead of a second one.
        t.data.setdefault("appeal_id", appeal_package.new_appeal_id(t.now))
        slots = t.data["slots"]
        lines = "\n".join(f"{CIRCLED[i]}{m.label}:{self._describe(m.slot, slots.get(m.slot, ''))}"
                          for i, m in enumerate(self._materials(t)))
        if t.data.get("supplement"):
            text = prefix + self.r("supplement_summary", lines=lines)
        else:
            text = prefix + self.r("summary", lines=lines, next=self._where_it_goes(t))
        problems = review.findings(slots, {m.slot: m.label for m in self._materials(t)}, self._prompt_id_of)
        if problems:  # said before 确认, never silently; kept with the appeal if confirmed anyway
            t.data["review_findings"] = problems
            text += "\n" + self.r("review_warning", problems=";".join(problems))
        else:
            t.data.pop("review_findings", None)
        return [self._say(t, text)]

    def _prompt_id_of(self, text: str) -> int | None:
        result = self.matcher.match(text)
        return result.id if result.tier == "confident" else None

    def _where_it_goes(self, t: Turn) -> str:
        """What 确认 will do with the package: send it, leave it to the operator, or the creator uploads."""
        if t.data["route"] == "online":
            return self.r("summary_online")
        if smtp_enabled(self.settings):
            return self.r("summary_send_to", email=self.settings.appeal_email)
        return self.r("summary_operator")

    async def _state_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        edit = _EDIT.match(_plain(text))
        if edit:
            n = int(edit.group(1))
            materials = self._materials(t)
            if not 1 <= n <= len(materials):
                return [self._say(t, self.r("edit_out_of_range", count=len(materials)))]
            slot = materials[n - 1].slot
            old = t.data["slots"].pop(slot, None)
            if isinstance(old, dict):
                self._delete_ref(t.writes, old)
            t.data["editing"] = True
            if slot == MILITARY_SLOT:
                t.conv.state, t.data["awaiting"] = "military", "military"
                return [self._say(t, self.r("ask_military"))]
            t.conv.state, t.data["awaiting"] = "collecting", slot
            return [self._say(t, self._ask(slot))]
        if t.reading.polarity is True and not t.reading.question:
            return await self._finish(t)
        self._not_understood(t, text)
        return [self._say(t, self.r("confirm_reask"))]

    async def _finish(self, t: Turn) -> list[Outgoing]:
        if t.data.get("supplement"):
            return await self._finish_supplement(t)
        route = t.data["route"]
        r = self.kb.routes[route]
        prompt = self.kb.prompt(t.data.get("prompt_id") or 0)
        appeal_id = t.data.get("appeal_id") or appeal_package.new_appeal_id(t.now)
        slots = t.data["slots"]
        files, values = {}, {}
        for m in r.materials:
            value = slots.get(m.slot)
            if isinstance(value, dict):
                files[m.slot] = f"files/{value['file']}"
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
        if t.data.get("review_findings"):  # the creator confirmed despite these (OCR may be wrong)
            record["review_findings"] = {"findings": t.data["review_findings"], "kept_by_creator": True}
        # Decrypting the working copies and writing the encrypted package (a video may be tens of
        # MB) runs off the event loop: other chats are not held up.
        await asyncio.to_thread(self._write_package, record, files)
        masked = v.mask_id_number(values["id_number"]) if values.get("id_number") else "-"
        t.writes.add_appeal(appeal_id, t.msg.sender, route, record["prompt_id"], masked, t.now)
        t.writes.record("appeal_finished", t.now, record["prompt_id"])
        self._drop_collected(t.writes, t.data)
        t.conv.state, t.conv.data = "idle", {}
        items = "、".join(m.label for m in r.materials)
        kept = self.r("retention", retention_days=f"{self.settings.appeal_retention_days:g}")
        subject = r.email_subject.format(account_name=values.get("account_name", "")) if r.email_subject else ""
        if route == "online":
            text = self.r("appeal_done_online", appeal_id=appeal_id, count=len(r.materials), items=items)
        elif smtp_enabled(self.settings):
            # queued with this turn; the send queue mails it on the next tick
            t.writes.set_status(appeal_id, "queued", t.now, "bot")
            t.writes.queue_send(appeal_id, t.now)
            text = self.r("appeal_queued", appeal_id=appeal_id, email=self.settings.appeal_email, subject=subject)
        else:
            text = self.r("appeal_done_operator", appeal_id=appeal_id, subject=subject)
        out = self._say(t, text + "\n" + kept)
        out.appeal_id = appeal_id
        return [out]

    def _write_package(self, record: dict, files: dict[str, str]) -> None:
        plain = {slot: self.vault.decrypt(self.files.read(key)) for slot, key in files.items()}
        appeal_package.write_package(self.settings, self.vault, record, plain, area=self.files)

    # == commands =======================================================================
    async def _cmd_cancel(self, t: Turn) -> list[Outgoing]:
        if t.data.get("supplement"):  # the submitted appeal stays as it is
            self._drop_collected(t.writes, t.data)
            t.conv.state, t.conv.data = "idle", {}
            return [self._say(t, self.r("supplement_cancelled"))]
        active = t.conv.state != "idle" or t.data.get("slots")
        if t.data.get("slots") is not None:
            t.writes.record("appeal_abandoned", t.now, t.data.get("prompt_id"))
        self._drop_collected(t.writes, t.data)
        t.conv.state, t.conv.data = "idle", {}
        if not active:
            return [self._say(t, self.r("cancel_nothing"))]
        return [self._say(t, self.r("cancelled"))]

    async def _cmd_pause(self, t: Turn) -> list[Outgoing]:
        if not t.data.get("route"):
            return [self._say(t, self.r("pause_nothing"))]
        t.data["paused"] = True
        return [self._say(t, self.r("paused", expiry_hours=f"{self.settings.expiry_hours:g}"))]

    async def _cmd_resume(self, t: Turn) -> list[Outgoing]:
        if t.conv.state == "idle":
            return [self._say(t, self.r("resume_nothing"))]
        return [self._say(t, self.r("resumed", question=self._pending_line(t)))]

    async def _cmd_restart(self, t: Turn) -> list[Outgoing]:
        prompt_id = t.data.get("prompt_id")
        self._drop_collected(t.writes, t.data)
        t.conv.data = {"prompt_id": prompt_id} if prompt_id else {}
        if prompt_id and self.kb.group_of(prompt_id) and self.kb.group_of(prompt_id).appeal:
            return self._start_appeal(t)
        t.conv.state = "idle"
        return [self._say(t, self.r("restarted"))]

    async def _cmd_skip(self, t: Turn) -> list[Outgoing]:
        awaiting = t.data.get("awaiting")
        if awaiting in ("military", MILITARY_SLOT):
            t.data["slots"][MILITARY_SLOT] = NOT_APPLICABLE
            return self._ask_next(t, self.r("skipped") + "\n")
        if t.conv.state == "collecting":
            return [self._say(t, self.r("skip_required", question=self._pending_line(t)))]
        return [self._say(t, self.r("skip_nothing"))]

    async def _cmd_progress(self, t: Turn) -> list[Outgoing]:
        if t.conv.state == "route":  # the appeal has begun; which materials depends on the route
            return [self._say(t, self.r("progress_route", question=self._pending_line(t)))]
        if not t.data.get("route"):
            latest = self.store.appeals(sender=t.msg.sender, limit=1)
            if latest:  # nothing being collected: the latest appeal's id, status and date
                a = latest[0]
                when = local_minutes(a.get("status_at") or a["created_at"], self.settings)
                return [self._say(t, self.r("progress_appeal", appeal_id=a["appeal_id"],
                                            status=self.r(f"status_{a['status']}"), date=when,
                                            note=self.r("appeal_status_note", note=a["note"])
                                            if a.get("note") and a["status"] in OPERATOR_STATUSES else "",
                                            thread=self._thread_lines(a)))]
            return [self._say(t, self.r("progress_none", question=self._pending_line(t)))]
        slots = t.data["slots"]
        done = [m.label for m in self._materials(t) if m.slot in slots]
        left = [m.label for m in self._materials(t) if m.slot not in slots]
        return [self._say(t, self.r("progress", done_count=len(done), done="、".join(done) or "无",
                                    left_count=len(left), left="、".join(left) or "无",
                                    question=self._pending_line(t)))]

    def _thread_lines(self, appeal: dict) -> str:
        """进度 after 确认: the appeal's thread, one short line each (emails, replies, supplements)."""
        from bot.appeals import supplement
        from bot.appeals.cli import thread_events

        lines = []
        for e in thread_events(self.store, appeal["appeal_id"]):
            at = local_minutes(e["at"], self.settings)
            if e["kind"] in ("sent", "supplement_sent"):
                lines.append(self.r(f"thread_{e['kind']}", at=at))
            elif e["kind"] == "reply":
                first = next((x for x in (e["text"] or "").splitlines() if x.strip()), "")[:60]
                lines.append(self.r("thread_reply", at=at, first=first or "…"))
        request = supplement.request_of(self.store, appeal["appeal_id"]) if appeal["status"] == "need_more" else None
        if request is not None:
            labels = {m.slot: m.label for m in self.kb.routes[appeal["route"]].materials}
            named = "、".join(labels.get(x, x) for x in request["items"])
            lines.append(self.r("thread_need_more", at=local_minutes(request.get("at"), self.settings),
                                items=f":{named}" if named else ""))
        return "".join(lines[-6:])

    async def _cmd_help(self, t: Turn) -> list[Outgoing]:
        return [self._say(t, self.r("help") + "\n" + self._pending_line(t))]

    async def _cmd_details(self, t: Turn) -> list[Outgoing]:
        """The source document's own text for the last prompt ("详细" / "原文")."""
        prompt_id = t.data.get("prompt_id") or (t.data.get("switch") or {}).get("prompt_id")
        if not prompt_id or not self.kb.prompt(prompt_id):
            return [self._say(t, self.r("details_nothing"))]
        group = self.kb.group_of(prompt_id)
        text = self._render(group.remedy)
        if group.notes:
            text += "\n" + "\n".join(group.notes)
        out = self.r("details", prompt=self._prompt_text(prompt_id), remedy=text)
        if t.conv.state != "idle":
            out += "\n" + self._pending_line(t, again=True)
        return [self._say(t, out)]

    async def _cmd_appeal(self, t: Turn) -> list[Outgoing]:
        prompt_id = t.data.get("prompt_id")
        group = self.kb.group_of(prompt_id) if prompt_id else None
        if t.conv.state in _APPEAL_STATES and t.data.get("route"):
            return [self._say(t, self.r("resumed", question=self._pending_line(t)))]
        if group and group.appeal:
            return self._start_appeal(t)
        if group:
            return self._appeal_not_for_prompt(t, prompt_id)
        return [self._say(t, self.r("appeal_needs_prompt"))]

    async def _cmd_delete(self, t: Turn) -> list[Outgoing]:
        t.data["before_delete"] = [t.conv.state, t.data.get("awaiting")]
        t.conv.state, t.data["awaiting"] = "delete_confirm", "delete_confirm"
        return [self._say(t, self.r("delete_ask"))]

    async def _state_delete_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        if _plain(text) in {"确认删除", "确认", "删除", "确定", "确定删除"} or (
                t.reading.polarity is True and t.reading.chit_chat):
            removed = self.delete_user_data(t.msg.sender, t.writes, t.data)
            t.conv.state, t.conv.data = "idle", {}
            return [self._say(t, self.r("deleted", count=removed))]
        t.conv.state, t.data["awaiting"] = t.data.pop("before_delete", ["idle", None])
        return [self._say(t, self.r("not_deleted", question=self._pending_line(t)))]

    def delete_user_data(self, sender: str, writes: Writes, data: dict | None = None) -> int:
        """Everything of one user: conversations (in the turn's transaction), working files,
        packages, and the leftovers of an interrupted package write."""
        self.files.delete_tree(f"files/{self._user_key(sender)}")
        removed = appeal_package.delete_appeals_of_user(self.settings, sender, self.vault, area=self.files)
        appeal_ids = {c.data.get("appeal_id") for c in self.store.conversations_of(sender)}
        appeal_ids.add((data or {}).get("appeal_id"))
        appeal_package.delete_temp_packages(self.settings, {a for a in appeal_ids if a}, area=self.files)
        writes.delete_user(sender)
        return removed

    # -- human help ------------------------------------------------------------------------
    def _human(self, t: Turn, room: bool = False, then: str = "") -> list[Outgoing]:
        """How to reach the platform's people; with `handoff_to`, a short note to those contacts."""
        out = []
        notified = False
        if self.settings.handoff_to and not room:
            note = self.r("handoff_note", user=t.msg.sender, case=self._case_summary(t))
            for contact in self.settings.handoff_to:
                if contact != t.msg.sender:
                    out.append(Outgoing(chat=contact, to=contact, text=note))
                    notified = True
        text = self.r("human") + ("\n" + self.r("human_notified") if notified else "") + ("\n" + then if then else "")
        return [self._say(t, text, mention=room), *out]

    def _case_summary(self, t: Turn) -> str:
        """The state of a creator's case without personal data: prompt, route, progress."""
        total = len(self._materials(t)) if t.data.get("route") else 0
        return self.r("handoff_case", prompt=t.data.get("prompt_id") or "-",
                      route=self.kb.routes[t.data["route"]].title if total else "-",
                      done=total - len(self._missing(t)) if total else 0, total=total,
                      state=awaiting_of(t.conv) or "idle")

    # == helpers ========================================================================
    def _pending_line(self, t: Turn, again: bool = False) -> str:
        """The pending question in one short line (or what to send first, when idle)."""
        state, awaiting = t.conv.state, t.data.get("awaiting")
        if state == "collecting" and awaiting in self.kb.items:
            return self.r("resume_item", item=self._label(t, awaiting))
        if state == "idle":
            return "" if again else self.r("ask_idle")
        if state == "route":
            return self.kb.items["route"].ask
        return self.r(f"ask_{state}") if f"ask_{state}" in self.kb.responses else ""

    def _label(self, t: Turn, slot: str) -> str:
        if t.data.get("route"):
            found = next((m.label for m in self._materials(t) if m.slot == slot), None)
            if found:
                return found
        return self.kb.items[slot].label if slot in self.kb.items else slot

    def _drop_collected(self, writes: Writes, data: dict) -> None:
        """Delete the working copies of files collected in a conversation (after the commit)."""
        for value in (data.get("slots") or {}).values():
            if isinstance(value, dict) and "file" in value:
                self._delete_ref(writes, value)
        pending = data.get("pending_file")
        if pending:
            self._delete_ref(writes, pending["ref"])
        for queued in data.get("queued_files") or []:
            self._delete_ref(writes, queued["ref"])

    def _record_match(self, t: Turn, result: MatchResult, unmatched: bool = True) -> None:
        if result.tier == "confident":
            t.writes.record("match", t.now, result.id)
        elif result.tier == "suggest":
            t.writes.record("suggest", t.now, result.id)
        else:
            t.writes.record("none", t.now)
            if unmatched:
                self._record_unmatched(t)

    def _record_unmatched(self, t: Turn) -> None:
        text = redact(" ".join((t.msg.text or "").split()))[:120]
        if text and not v.find_id_numbers(text):
            t.writes.record_unmatched(text, t.now)

    def _say(self, t: Turn, text: str, mention: bool = False, prompt_id: int | None = ...) -> Outgoing:
        return Outgoing(chat=t.msg.chat, to=t.msg.sender, text=text.strip(), mention=mention and t.msg.room,
                        prompt_id=t.data.get("prompt_id") if prompt_id is ... else prompt_id)

    # == timers =========================================================================
    def on_idle(self, conv: Conversation, now: datetime, writes: Writes) -> list[Outgoing]:
        """Reminder after `reminder_minutes`, expiry (and deletion) after `expiry_hours` (after `use`)."""
        idle = now - conv.last_activity
        if idle >= timedelta(hours=self.settings.expiry_hours):
            collecting = conv.data.get("slots") is not None
            self._drop_collected(writes, conv.data)
            if collecting:
                writes.record("appeal_abandoned", now, conv.data.get("prompt_id"))
            conv.state, conv.data = "idle", {}
            if not collecting or conv.chat != conv.sender:
                return []
            return [Outgoing(chat=conv.chat, to=conv.sender,
                             text=self.r("expired", expiry_hours=f"{self.settings.expiry_hours:g}"))]
        if (not conv.reminded and not conv.data.get("paused")
                and idle >= timedelta(minutes=self.settings.reminder_minutes)
                and conv.chat == conv.sender and conv.data.get("slots") is not None):
            conv.reminded = True
            if not conv.data.get("route"):  # accepted the appeal, then went quiet at the 线上反馈 question
                return [Outgoing(chat=conv.chat, to=conv.sender, text=self.r("reminder_route"))]
            left = len([m for m in self.kb.routes[conv.data["route"]].materials
                        if m.slot not in conv.data.get("slots", {})])
            return [Outgoing(chat=conv.chat, to=conv.sender,
                             text=self.r("reminder", left=left, expiry_hours=f"{self.settings.expiry_hours:g}"))]
        return []


async def _off_loop_if_big(path: Path, fn, *args, always: bool = False):
    """fn(*args) in a worker thread when the file is big (or `always`); on the loop otherwise,
    since for a photo the hand-off costs more than the work."""
    if always or Path(path).stat().st_size > OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def _wildcard_value(prompt_text: str, wildcard: str | None, message: str | None) -> str | None:
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
