"""Scene `military`: does 军人证件 apply? No: the item is marked not applicable; yes: its documents
are asked for as an item (`collecting.py`)."""
from __future__ import annotations

from bot.dialog.files import FilesScene
from bot.dialog.registry import Scene, register
from bot.dialog.slots import MILITARY_SLOT, NOT_APPLICABLE
from bot.dialog.turn import Turn
from bot.messages import Outgoing


class MilitaryScene:
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


register(Scene("military", on_text=MilitaryScene._state_military, on_file=FilesScene._file_during_appeal,
               in_appeal=True, yes_no=True))
