"""The whole-message commands that work in every state (knowledge/intents.yaml `commands`), each
registered by name (`registry.command`): 取消, 暂停, 继续, 重新开始, 跳过, 进度, 帮助, 详细, 申诉.
删除我的资料 is in `delete.py`, 补充 in `supplement.py`."""
from __future__ import annotations

from bot.dialog.registry import command, in_appeal
from bot.dialog.slots import MILITARY_SLOT, NOT_APPLICABLE
from bot.dialog.turn import Turn
from bot.messages import Outgoing
from bot.store import OPERATOR_STATUSES
from bot.timefmt import local_minutes


class Commands:
    @command("cancel")
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

    @command("pause")
    async def _cmd_pause(self, t: Turn) -> list[Outgoing]:
        if not t.data.get("route"):
            return [self._say(t, self.r("pause_nothing"))]
        t.data["paused"] = True
        return [self._say(t, self.r("paused", expiry_hours=f"{self.settings.expiry_hours:g}"))]

    @command("resume")
    async def _cmd_resume(self, t: Turn) -> list[Outgoing]:
        if t.conv.state == "idle":
            return [self._say(t, self.r("resume_nothing"))]
        return [self._say(t, self.r("resumed", question=self._pending_line(t)))]

    @command("restart")
    async def _cmd_restart(self, t: Turn) -> list[Outgoing]:
        prompt_id = t.data.get("prompt_id")
        self._drop_collected(t.writes, t.data)
        # the funnel's attempt goes on (its items are not counted twice)
        kept = {k: t.data[k] for k in ("prompt_id", "attempt") if t.data.get(k)}
        t.conv.data = kept if prompt_id else {}
        if prompt_id and self.kb.group_of(prompt_id) and self.kb.group_of(prompt_id).appeal:
            return self._start_appeal(t)
        t.conv.state = "idle"
        return [self._say(t, self.r("restarted"))]

    @command("skip")
    async def _cmd_skip(self, t: Turn) -> list[Outgoing]:
        awaiting = t.data.get("awaiting")
        if awaiting in ("military", MILITARY_SLOT):
            t.data["slots"][MILITARY_SLOT] = NOT_APPLICABLE
            return self._ask_next(t, self.r("skipped") + "\n")
        if t.conv.state == "collecting":
            return [self._say(t, self.r("skip_required", question=self._pending_line(t)))]
        return [self._say(t, self.r("skip_nothing"))]

    @command("progress")
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
        from bot.appeals.status import thread_events

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
        return "".join("\n" + line for line in lines[-6:])  # one line each (the catalogue's texts are stripped)

    @command("help")
    async def _cmd_help(self, t: Turn) -> list[Outgoing]:
        return [self._say(t, self.r("help") + "\n" + self._pending_line(t))]

    @command("details")
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

    @command("appeal")
    async def _cmd_appeal(self, t: Turn) -> list[Outgoing]:
        prompt_id = t.data.get("prompt_id")
        group = self.kb.group_of(prompt_id) if prompt_id else None
        if in_appeal(t.conv.state) and t.data.get("route"):
            return [self._say(t, self.r("resumed", question=self._pending_line(t)))]
        if group and group.appeal:
            return self._start_appeal(t)
        if group:
            return self._appeal_not_for_prompt(t, prompt_id)
        return [self._say(t, self.r("appeal_needs_prompt"))]
