"""What every scene uses: the dialog's parts (settings, store, vault, OCR, knowledge), the catalogue's
texts (`r`), a reply (`_say`), the pending question in one line, item labels and the route's
materials, the prompt as the creator saw it, what is recorded for operators, and the working files
a conversation dropped."""
from __future__ import annotations

import hashlib
import secrets

from bot.appeals.crypto import Vault
from bot.dialog import validators as v
from bot.dialog.turn import Turn, awaiting_of, wildcard_value
from bot.kb import KnowledgeBase
from bot.kb.responses import render
from bot.matching import MatchResult, Matcher
from bot.matching.intents import Reader
from bot.messages import Outgoing
from bot.privacy import redact
from bot.settings import Settings
from bot.store import SqlStore, Writes


class DialogBase:
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

    def r(self, name: str, **fields) -> str:
        """A named text of the responses catalogue, filled in."""
        return render(self.kb.responses[name], **fields)

    def _match(self, t: Turn) -> MatchResult:
        """The message matched against the prompts, once per turn."""
        if t._match is None:
            t._match = self.matcher.match(t.msg.text or "")
        return t._match

    def _say(self, t: Turn, text: str, mention: bool = False, prompt_id: int | None = ...) -> Outgoing:
        return Outgoing(chat=t.msg.chat, to=t.msg.sender, text=text.strip(), mention=mention and t.msg.room,
                        prompt_id=t.data.get("prompt_id") if prompt_id is ... else prompt_id)

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

    def _materials(self, t: Turn):
        materials = self.kb.routes[t.data["route"]].materials
        asked = (t.data.get("supplement") or {}).get("items")
        return [m for m in materials if m.slot in asked] if asked else materials

    def _missing(self, t: Turn) -> list:
        slots = t.data.get("slots", {})
        return [m for m in self._materials(t) if m.slot not in slots]

    def _ask(self, slot: str) -> str:
        return self.kb.items[slot].ask

    @staticmethod
    def _kind_word(kind: str) -> str:
        return {"video": "视频", "image": "图片"}.get(kind, "文件")

    def _prompt_text(self, prompt_id: int, source: str | None = None, name: str | None = None) -> str:
        """The prompt as the creator saw it: prompt 14's 【XXX】 becomes the name they typed."""
        prompt = self.kb.prompt(prompt_id)
        if not prompt.wildcard:
            return prompt.text
        name = name or (wildcard_value(prompt.text, prompt.wildcard, source) if source else None)
        return prompt.text.replace(prompt.wildcard, f"【{name}】" if name else "")

    def _render(self, text: str, name: str | None = None) -> str:
        email = self.settings.appeal_email
        return render(text, appeal_email=f"({email})" if email else self.r("email_unknown_paren"),
                      name=f"【{name}】" if name else "")

    def _record_match(self, t: Turn, result: MatchResult, unmatched: bool = True) -> None:
        if result.tier == "confident":
            t.writes.record("match", t.now, result.id)
        elif result.tier == "suggest":
            t.writes.record("suggest", t.now, result.id)
        else:
            t.writes.record("none", t.now)
            if unmatched:
                self._record_unmatched(t)

    def _step(self, t: Turn, step: str, slot: str = "", start: bool = False, appeal_id: str | None = None) -> None:
        """A step of the appeal funnel (bot/store/funnel.py), committed with the turn. An attempt
        begins at a remedy (`start`: a new key, kept in the conversation until the appeal is
        confirmed or dropped); its later steps count once each. No attempt (a conversation from
        before the funnel existed): nothing is recorded. A supplement (需补充) is not part of it."""
        if t.data.get("supplement"):
            return
        if start:
            t.data["attempt"] = secrets.token_hex(8)
        if t.data.get("attempt"):
            t.writes.step(t.data["attempt"], step, t.now, t.data.get("prompt_id"), slot, t.data.get("route"),
                          appeal_id)

    def _step_filled(self, t: Turn) -> None:
        """The route's items collected so far, each counted once per attempt as filled."""
        if t.data.get("route"):
            slots = t.data.get("slots") or {}
            for m in self._materials(t):
                if m.slot in slots:
                    self._step(t, "filled", m.slot)

    def _record_unmatched(self, t: Turn) -> None:
        text = redact(" ".join((t.msg.text or "").split()))[:120]
        if text and not v.find_id_numbers(text):
            t.writes.record_unmatched(text, t.now)

    def _not_understood(self, t: Turn, text: str) -> None:
        """A message the bot could not use while it waited for an answer: recorded (redacted) for operators."""
        t.writes.record_not_understood(text, t.conv.state, awaiting_of(t.conv), t.now)

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

    def _delete_ref(self, writes: Writes, ref: dict) -> None:
        """Delete a working file once the state that dropped it is committed."""
        writes.delete_file_later(f"files/{ref['file']}")

    @staticmethod
    def _user_key(sender: str) -> str:
        """Folder name for a user's working files: not their contact id."""
        return hashlib.sha256(sender.encode()).hexdigest()[:16]
