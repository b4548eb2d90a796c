"""Scene `switch`: a new failure prompt arrived mid-appeal. With nothing collected it is simply
answered; else: switch and keep (1), switch and drop (2), or stay (3)."""
from __future__ import annotations

from bot.dialog.acts import choice_number
from bot.dialog.files import FilesScene
from bot.dialog.registry import Scene, register
from bot.dialog.turn import Turn
from bot.matching import MatchResult
from bot.messages import Outgoing


class SwitchScene:
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


register(Scene("switch", on_text=SwitchScene._state_switch, on_file=FilesScene._file_during_appeal,
               enter=SwitchScene._new_prompt, in_appeal=True))
