"""Scene `confirm`: the summary (what 确认 will do, what a reviewer would object to) and the finish:
the encrypted package written, the appeal recorded, and on the email route queued for sending."""
from __future__ import annotations

import asyncio

from bot.appeals import package as appeal_package
from bot.appeals.delivery import smtp_enabled
from bot.dialog import review
from bot.dialog import validators as v
from bot.dialog.files import FilesScene
from bot.dialog.registry import Scene, register
from bot.dialog.slots import MILITARY_SLOT
from bot.dialog.turn import CIRCLED, EDIT_NUMBER, Turn, plain
from bot.messages import Outgoing


class ConfirmScene:
    def _describe(self, slot: str, value) -> str:
        if isinstance(value, dict):
            kind = self._kind_word(value.get("kind"))
            extra = value.get("seen") or value.get("size") or (
                self.r("media_seconds", seconds=value["seconds"]) if value.get("seconds") else "")
            return self.r("file_described", kind=kind, extra=f"({extra})" if extra else "")
        if slot == "id_number":
            return v.mask_id_number(value)
        return str(value)

    def _summary(self, t: Turn, prefix: str = "") -> list[Outgoing]:
        t.conv.state, t.data["awaiting"] = "confirm", "confirm"
        # The package's id is chosen (and committed) before 确认: a redelivered 确认 writes the
        # same package again instead of a second one.
        t.data.setdefault("appeal_id", appeal_package.new_appeal_id(t.now, self.settings))
        slots = t.data["slots"]
        lines = "\n".join(f"{CIRCLED[i]}{m.label}:{self._describe(m.slot, slots.get(m.slot, ''))}"
                          for i, m in enumerate(self._materials(t)))
        if t.data.get("supplement"):
            text = prefix + self.r("supplement_summary", lines=lines)
        else:
            text = prefix + self.r("summary", lines=lines, next=self._where_it_goes(t))
        problems = review.findings(slots, {m.slot: m.label for m in self._materials(t)}, self._prompt_id_of)
        if problems:  # said before 确认, never silently; kept with the appeal if confirmed anyway
            t.data["review_findings"] = problems
            text += "\n" + self.r("review_warning", problems=";".join(problems))
        else:
            t.data.pop("review_findings", None)
        return [self._say(t, text)]

    def _prompt_id_of(self, text: str) -> int | None:
        result = self.matcher.match(text)
        return result.id if result.tier == "confident" else None

    def _where_it_goes(self, t: Turn) -> str:
        """What 确认 will do with the package: send it, leave it to the operator, or the creator uploads."""
        if t.data["route"] == "online":
            return self.r("summary_online")
        if smtp_enabled(self.settings):
            return self.r("summary_send_to", email=self.settings.appeal_email)
        return self.r("summary_operator")

    async def _state_confirm(self, t: Turn, text: str) -> list[Outgoing]:
        edit = EDIT_NUMBER.match(plain(text))
        if edit:
            n = int(edit.group(1))
            materials = self._materials(t)
            if not 1 <= n <= len(materials):
                return [self._say(t, self.r("edit_out_of_range", count=len(materials)))]
            slot = materials[n - 1].slot
            old = t.data["slots"].pop(slot, None)
            if isinstance(old, dict):
                self._delete_ref(t.writes, old)
            t.data["editing"] = True
            if slot == MILITARY_SLOT:
                t.conv.state, t.data["awaiting"] = "military", "military"
                return [self._say(t, self.r("ask_military"))]
            t.conv.state, t.data["awaiting"] = "collecting", slot
            return [self._say(t, self._ask(slot))]
        if t.reading.polarity is True and not t.reading.question:
            return await self._finish(t)
        self._not_understood(t, text)
        return [self._say(t, self.r("confirm_reask"))]

    async def _finish(self, t: Turn) -> list[Outgoing]:
        if t.data.get("supplement"):
            return await self._finish_supplement(t)
        route = t.data["route"]
        r = self.kb.routes[route]
        prompt = self.kb.prompt(t.data.get("prompt_id") or 0)
        appeal_id = t.data.get("appeal_id") or appeal_package.new_appeal_id(t.now, self.settings)
        slots = t.data["slots"]
        files, values = {}, {}
        for m in r.materials:
            value = slots.get(m.slot)
            if isinstance(value, dict):
                files[m.slot] = f"files/{value['file']}"
            elif value is not None:
                values[m.slot] = value
        evidence = slots.get("taobao_screenshot")
        if isinstance(evidence, dict) and evidence.get("ocr_text"):
            values["taobao_screenshot_ocr_text"] = evidence["ocr_text"]
        record = {
            "appeal_id": appeal_id, "route": route, "prompt_id": prompt.id if prompt else None,
            "prompt_text": prompt.text if prompt else None, "user": t.msg.sender,
            "created_at": t.data.get("started_at"), "confirmed_at": t.now.isoformat(),
            "status": "ready", "slots": values,
            "materials": [{"slot": m.slot, "label": m.label, "optional": m.optional} for m in r.materials],
        }
        if t.data.get("review_findings"):  # the creator confirmed despite these (OCR may be wrong)
            record["review_findings"] = {"findings": t.data["review_findings"], "kept_by_creator": True}
        # Decrypting the working copies and writing the encrypted package (a video may be tens of
        # MB) runs off the event loop: other chats are not held up.
        await asyncio.to_thread(self._write_package, record, files)
        masked = v.mask_id_number(values["id_number"]) if values.get("id_number") else "-"
        t.writes.add_appeal(appeal_id, t.msg.sender, route, record["prompt_id"], masked, t.now)
        t.writes.record("appeal_finished", t.now, record["prompt_id"])
        self._step_filled(t)
        self._step(t, "confirmed", appeal_id=appeal_id)
        self._drop_collected(t.writes, t.data)
        t.conv.state, t.conv.data = "idle", {}
        items = "、".join(m.label for m in r.materials)
        kept = self.r("retention", retention_days=f"{self.settings.appeal_retention_days:g}")
        subject = r.email_subject.format(account_name=values.get("account_name", "")) if r.email_subject else ""
        if route == "online":
            text = self.r("appeal_done_online", appeal_id=appeal_id, count=len(r.materials), items=items)
        elif smtp_enabled(self.settings):
            # queued with this turn; the send queue mails it on the next tick
            t.writes.set_status(appeal_id, "queued", t.now, "bot")
            t.writes.queue_send(appeal_id, t.now)
            text = self.r("appeal_queued", appeal_id=appeal_id, email=self.settings.appeal_email, subject=subject)
        else:
            text = self.r("appeal_done_operator", appeal_id=appeal_id, subject=subject)
        out = self._say(t, text + "\n" + kept)
        out.appeal_id = appeal_id
        return [out]

    def _write_package(self, record: dict, files: dict[str, str]) -> None:
        plain = {slot: self.vault.decrypt(self.files.read(key)) for slot, key in files.items()}
        appeal_package.write_package(self.settings, self.vault, record, plain, area=self.files)


register(Scene("confirm", on_text=ConfirmScene._state_confirm, on_file=FilesScene._file_during_appeal,
               enter=ConfirmScene._summary, in_appeal=True, yes_no=True))
