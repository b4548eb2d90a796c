"""Scenes `appeal_offer` ("shall I help you prepare the appeal?") and `route` (is the 线上反馈 entry
shown?): the answer picks the route, whose materials are then collected (`collecting.py`)."""
from __future__ import annotations

from bot.dialog.files import FilesScene
from bot.dialog.registry import Scene, register
from bot.dialog.turn import CIRCLED, Turn
from bot.messages import Outgoing


class OfferScene:
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
        self._step(t, "accepted", start=not t.data.get("attempt"))  # 申诉 with no remedy before: begins one
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
        self._step(t, f"route_{route}")
        r = self.kb.routes[route]
        items = "\n".join(f"{CIRCLED[i]}{m.label}" for i, m in enumerate(r.materials))
        return [self._say(t, self.r(f"route_{route}", count=len(r.materials), items=items)), *self._ask_next(t)]


register(Scene("appeal_offer", on_text=OfferScene._state_appeal_offer, yes_no=True))
register(Scene("route", on_text=OfferScene._state_route, on_file=FilesScene._file_during_appeal,
               enter=OfferScene._start_appeal, in_appeal=True, yes_no=True))
