"""Scenes `idle` (nothing pending: a prompt matched, a remedy given, small talk) and `choice` (which of
the suggested prompts). A confident prompt gets its remedy, and when its group has an appeal route,
the offer (`offer.py`)."""
from __future__ import annotations

from bot.dialog.acts import choice_number
from bot.dialog.registry import Scene, register
from bot.dialog.turn import FROM_GROUP_WITHIN, Turn, plain, wildcard_value
from bot.matching import MatchResult
from bot.messages import Outgoing


class IdleScene:
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
        if len(plain(text)) <= 4 and not plain(text).isdigit():
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
        if group.appeal:  # the offer goes on the attempt the group's remedy began
            t.conv.state = "appeal_offer"
            if room.data.get("attempt"):
                t.data["attempt"] = room.data["attempt"]
            self._step(t, "offered", start=not t.data.get("attempt"))
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

    def _remedy(self, t: Turn, prompt_id: int, room: bool, source: str | None = None) -> list[Outgoing]:
        prompt = self.kb.prompt(prompt_id)
        group = self.kb.groups[prompt.group]
        shown = self._prompt_text(prompt_id, source if source is not None else t.msg.text)
        name = wildcard_value(prompt.text, prompt.wildcard, source or t.msg.text or "") if prompt.wildcard else None
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
            self._step(t, "remedy", start=True)
            if group.appeal:
                text += "\n" + self.r("room_appeal_hint")
            return [self._say(t, text, mention=True, prompt_id=prompt_id)]
        self._step(t, "remedy", start=True)
        if group.appeal:
            t.conv.state = "appeal_offer"
            self._step(t, "offered")
            text += "\n" + self.r("appeal_offer")
        else:
            t.conv.state = "idle"
            text += "\n" + self.r("details_hint")
        return [self._say(t, text, prompt_id=prompt_id)]

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


register(Scene("idle", on_text=IdleScene._state_idle, shared_first=False))
register(Scene("choice", on_text=IdleScene._state_choice))
