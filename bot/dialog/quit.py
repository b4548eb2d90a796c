"""Scene `quit_confirm`: "不整了" mid-appeal asks once whether to cancel (delete what was collected)
or pause (keep it)."""
from __future__ import annotations

from bot.dialog.registry import Scene, register
from bot.dialog.turn import Turn
from bot.messages import Outgoing


class QuitScene:
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


register(Scene("quit_confirm", on_text=QuitScene._state_quit_confirm, enter=QuitScene._ask_quit,
               shared_first=False, in_appeal=True))
