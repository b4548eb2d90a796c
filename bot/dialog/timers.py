"""While the creator is away: a reminder after `reminder_minutes`, expiry (and deletion of what was
collected) after `expiry_hours`. A scene registered with its own `on_idle` decides for itself."""
from __future__ import annotations

from datetime import datetime, timedelta

from bot.dialog.registry import bound, scene_of
from bot.messages import Outgoing
from bot.store import Conversation, Writes


class Timers:
    def on_idle(self, conv: Conversation, now: datetime, writes: Writes) -> list[Outgoing]:
        """The scene's own `on_idle` when it registered one (none does today), else the shared timers."""
        scene = scene_of(conv.state)
        if scene is not None and scene.on_idle is not None:
            return bound(self, scene.on_idle)(conv, now, writes)
        return self._shared_timers(conv, now, writes)

    def _shared_timers(self, conv: Conversation, now: datetime, writes: Writes) -> list[Outgoing]:
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
