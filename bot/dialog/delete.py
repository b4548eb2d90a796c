"""Scene `delete_confirm` (the 删除我的资料 command): everything about the creator deleted once they
confirm: conversations, working files, packages."""
from __future__ import annotations

from bot.appeals import package as appeal_package
from bot.dialog.files import FilesScene
from bot.dialog.registry import Scene, command, register
from bot.dialog.turn import Turn, plain
from bot.messages import Outgoing
from bot.store import Writes


class DeleteScene:
    @command("delete")
    async def _cmd_delete(self, t: Turn) -> list[Outgoing]:
        t.data["before_delete"] = [t.conv.state, t.data.get("awaiting")]
        t.conv.state, t.data["awaiting"] = "delete_confirm", "delete_confirm"
        return [self._say(t, self.r("delete_ask"))]

    async def _state_delete_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        if plain(text) in {"确认删除", "确认", "删除", "确定", "确定删除"} or (
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


register(Scene("delete_confirm", on_text=DeleteScene._state_delete_confirm, on_file=FilesScene._file_ignored,
               enter=DeleteScene._cmd_delete, shared_first=False))
