"""The entry point and the order of interpretation every waiting state shares.

A message is read once (`bot.matching.intents.Reader`: commands, yes/no, questions, small talk)
and, where it matters, matched against the prompts. In a DM, in every waiting state the order is
the same: a command (`registry.COMMANDS`) -> acts that come first (不整了, 修改, a value inside a
sentence, an answer followed by a question) -> human help -> a question (an FAQ entry, or about the
awaited item): answered, and the pending question repeated in one line -> a new failure prompt at
`confident`: offer to switch -> small talk (who are you, not now) -> the scene's own handler
(`registry.SCENES[state].on_text`). Scenes registered with `shared_first=False` (idle,
delete_confirm, quit_confirm) get the message directly. A file goes to the scene's `on_file`.
A question or remark is never stored as an item's value. Rooms: `rooms.py`."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bot.dialog.acts import answer_then_question, edit_target
from bot.dialog.registry import COMMANDS, SCENES, bound, in_appeal, scene_of, yes_no
from bot.dialog.slots import MILITARY_SLOT, SLOTS
from bot.dialog.transcript import reading_of
from bot.dialog.turn import Turn
from bot.kb import KnowledgeBase
from bot.matching import Matcher
from bot.matching.intents import Reader
from bot.messages import Incoming, Outgoing
from bot.store import Conversation, Writes


class Dispatch:
    async def handle(self, kb: KnowledgeBase, matcher: Matcher, msg: Incoming, conv: Conversation,
                     now: datetime, reader: Reader, writes: Writes | None = None) -> list[Outgoing]:
        self.use(kb, matcher, reader)
        turn = Turn(msg, conv, now, writes=writes if writes is not None else Writes())
        if msg.attachment is None:
            turn.reading = self.reader.read(msg.text or "")
        original = turn.reading
        if msg.room:
            return await self._room(turn)
        replies = await self._dm(turn)
        turn.writes.reading = reading_of(turn, original)  # for the transcript (bot/dialog/transcript.py)
        return replies

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
            return await bound(self, COMMANDS[rd.command])(t)
        scene = scene_of(conv.state)
        if scene is None:  # unknown state from a newer/older version: start clean
            conv.state = "idle"
            scene = SCENES["idle"]
        handler = bound(self, scene.on_text)
        if scene.shared_first:
            first = await self._acts_first(t, text, handler)
            if first is not None:
                return first
            interrupted = self._interrupt(t)
            if interrupted is not None:
                return interrupted
        return await handler(t, text)

    async def _attachment(self, t: Turn) -> list[Outgoing]:
        """A file: to the scene's `on_file` (the shared reading of a screenshot when it has none)."""
        if not Path(t.msg.attachment.path).is_file():  # a directory, a vanished download, ...
            return [self._say(t, self.r("file_not_received", question=self._pending_line(t)))]
        scene = scene_of(t.conv.state)
        if scene is not None and scene.on_file is not None:
            return await bound(self, scene.on_file)(t)
        return await self._file_read(t)

    async def _acts_first(self, t: Turn, text: str, handler) -> list[Outgoing] | None:
        """What a message does before the shared interruptions: stop, correct an item, a value
        inside a sentence (with whatever else the sentence says), an answer followed by a question."""
        rd, state = t.reading, t.conv.state
        if rd.has("quit") and in_appeal(state) and not rd.question:
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
        if yes_no(state):
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
                # before the whole last line: its lead-in ("先确认一下:") stays with the question
                head, _, last = text.rpartition("\n")
                reply.text = (head + "\n" if head else "") + answer + "\n" + last
                return
        reply.text = text + "\n" + answer

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
        if rd.has("not_now") and in_appeal(state):
            return [self._say(t, self.r("not_now_collecting", expiry_hours=f"{self.settings.expiry_hours:g}"))]
        if rd.question and yes_no(state) and rd.polarity is None \
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
