"""The supplement scene: 需补充 answered inside the same appeal (a mixin of `Dialog`).

When an operator sets an appeal to need_more (with the items to send again, or none named), the
creator's "补充" — or a yes, or a photo or video sent right away — starts a round that asks only
for those items (or first which ones), with the same extractors, validators and commands (进度,
暂停, 取消: cancelling a supplement keeps the submitted appeal). After the summary and 确认 the
package gets a new version and, on the email route, a follow-up email in the same thread is queued;
on the 线上反馈 route the creator is told what to upload again, and says when it is done.
"""
from __future__ import annotations

import asyncio

from bot.appeals import supplement
from bot.appeals.delivery import smtp_enabled
from bot.dialog.acts import choice_number, clauses
from bot.dialog.registry import Scene, command, register
from bot.messages import Outgoing


class SupplementScene:
    # -- starting ------------------------------------------------------------------------------
    def _supplement_due(self, t) -> dict | None:
        """The creator's latest appeal, when an operator asked for a supplement of it."""
        latest = self.store.appeals(sender=t.msg.sender, limit=1)
        # a reply of the platform after 需补充 makes it `replied`; the request stays until answered
        if not latest or latest[0]["status"] not in ("need_more", "replied"):
            return None
        request = supplement.request_of(self.store, latest[0]["appeal_id"])
        return {"appeal": latest[0], "request": request} if request is not None else None

    @command("supplement")
    async def _cmd_supplement(self, t) -> list[Outgoing]:
        if t.data.get("supplement") or (t.conv.state != "idle" and t.data.get("route")):
            return [self._say(t, self.r("resumed", question=self._pending_line(t)))]
        due = self._supplement_due(t)
        if due is None:
            return [self._say(t, self.r("supplement_nothing"))]
        return self._start_supplement(t, due)

    def _start_supplement(self, t, due: dict) -> list[Outgoing]:
        appeal, request = due["appeal"], due["request"]
        self._drop_collected(t.writes, t.data)
        t.conv.data = {"supplement": {"appeal_id": appeal["appeal_id"], "items": list(request["items"]),
                                      "note": request.get("note")},
                       "route": appeal["route"], "slots": {}, "failures": {}, "prompt_id": appeal.get("prompt_id"),
                       "started_at": t.now.isoformat()}
        t.writes.record("supplement_started", t.now, appeal.get("prompt_id"))
        if not request["items"]:
            return self._ask_supplement_items(t)
        labels = "、".join(m.label for m in self._materials(t))
        return self._ask_next(t, self.r("supplement_start", appeal_id=appeal["appeal_id"], items=labels) + "\n")

    def _ask_supplement_items(self, t) -> list[Outgoing]:
        t.conv.state, t.data["awaiting"] = "supplement_which", "supplement_which"
        materials = self.kb.routes[t.data["route"]].materials
        options = "\n".join(f"{i}. {m.label}" for i, m in enumerate(materials, start=1))
        return [self._say(t, self.r("supplement_which", appeal_id=t.data["supplement"]["appeal_id"], options=options))]

    async def _state_supplement_which(self, t, text: str) -> list[Outgoing]:
        materials = self.kb.routes[t.data["route"]].materials
        picked = []
        for part in clauses(text.replace("和", " ")):
            n = choice_number(part, len(materials))
            if n:
                picked.append(materials[n - 1].slot)
        if not picked and t.reading.item in {m.slot for m in materials}:
            picked = [t.reading.item]
        if not picked:
            self._not_understood(t, text)
            return [self._say(t, self.r("supplement_which_reask", count=len(materials)))]
        t.data["supplement"]["items"] = [m.slot for m in materials if m.slot in picked]
        labels = "、".join(m.label for m in self._materials(t))
        return self._ask_next(t, self.r("supplement_start", appeal_id=t.data["supplement"]["appeal_id"],
                                        items=labels) + "\n")

    def _maybe_start_supplement(self, t) -> list[Outgoing] | None:
        """Idle, and a supplement is due: a yes or a file starts it (the file then fills its item)."""
        rd = t.reading
        if t.msg.attachment is None and not (rd is not None and rd.polarity is True and rd.chit_chat):
            return None
        due = self._supplement_due(t)
        return self._start_supplement(t, due) if due is not None else None

    # -- finishing -----------------------------------------------------------------------------
    async def _finish_supplement(self, t) -> list[Outgoing]:
        sup = t.data["supplement"]
        appeal_id = sup["appeal_id"]
        appeal = self.store.appeal(appeal_id) or {}
        materials = self._materials(t)
        labels = {m.slot: m.label for m in self.kb.routes[t.data["route"]].materials}
        slots = t.data["slots"]
        file_keys = {m.slot: f"files/{slots[m.slot]['file']}" for m in materials if isinstance(slots.get(m.slot), dict)}
        values = {m.slot: slots[m.slot] for m in materials if isinstance(slots.get(m.slot), str)}
        reply_to = self._thread_reply_to(appeal_id)

        def write() -> dict:
            files = {slot: self.vault.decrypt(self.files.read(key)) for slot, key in file_keys.items()}
            return supplement.write_version(self.settings, self.vault, appeal_id, labels, values, files,
                                            sup.get("note"), reply_to, area=self.files, now=t.now)

        meta = await asyncio.to_thread(write)
        round_no = meta["supplements"][-1]["round"]
        supplement.clear_request(t.writes, appeal_id)
        t.writes.record("supplement_finished", t.now, t.data.get("prompt_id"))
        self._drop_collected(t.writes, t.data)
        items = "、".join(labels[m.slot] for m in materials)
        t.conv.state, t.conv.data = "idle", {}
        if appeal.get("route") == "online":
            t.conv.state = "supplement_upload"
            t.conv.data = {"supplement_upload": appeal_id, "awaiting": "supplement_upload"}
            return [self._say(t, self.r("supplement_online", appeal_id=appeal_id, items=items))]
        if smtp_enabled(self.settings):
            t.writes.set_status(appeal_id, "queued", t.now, "bot", None)
            t.writes.queue_send(supplement.send_key(appeal_id, round_no), t.now)
            out = self._say(t, self.r("supplement_queued", appeal_id=appeal_id))
        else:
            t.writes.set_status(appeal_id, "ready", t.now, "bot", None)
            out = self._say(t, self.r("supplement_operator", appeal_id=appeal_id))
        out.appeal_id = appeal_id
        return [out]

    def _thread_reply_to(self, appeal_id: str) -> list[str]:
        """What the follow-up answers, latest first: the platform's last reply, then our emails."""
        thread = self.store.thread(appeal_id)
        ours = [m["message_id"] for m in thread if m["kind"] in ("sent", "supplement_sent") and m.get("message_id")]
        replies = [m["message_id"] for m in thread if m["kind"] == "reply" and m.get("message_id")]
        first = supplement.followup_message_id(appeal_id, 0)
        chain = list(reversed(replies)) + list(reversed(ours))
        return chain or [first]

    async def _state_supplement_upload(self, t, text: str) -> list[Outgoing]:
        appeal_id = t.data.get("supplement_upload")
        rd = t.reading
        if rd.polarity is True:  # 已提交 / 传好了
            t.writes.set_status(appeal_id, "sent", t.now, "creator", None)
            t.conv.state, t.conv.data = "idle", {}
            return [self._say(t, self.r("supplement_uploaded", appeal_id=appeal_id))]
        return [self._say(t, self.r("supplement_upload_reask"))]


register(Scene("supplement_which", on_text=SupplementScene._state_supplement_which,
               enter=SupplementScene._ask_supplement_items))
register(Scene("supplement_upload", on_text=SupplementScene._state_supplement_upload))
