"""Files and OCR: a photo or video for the awaited item (checked, encrypted, looked at), a file sent
at another moment kept and asked about (scene `file_slot`: which item is it?), files sent in a row
each asked about in turn, and a screenshot read for a failure prompt."""
from __future__ import annotations

import logging
import secrets
from pathlib import Path

from bot.dialog import review
from bot.dialog import validators as v
from bot.dialog.acts import choice_number
from bot.dialog.registry import Scene, in_appeal, register
from bot.dialog.slots import SLOTS
from bot.dialog.turn import Turn, off_loop_if_big
from bot.messages import Outgoing

log = logging.getLogger(__name__)


class FilesScene:
    # -- a file, by the scene it arrives in (registry.Scene.on_file) ------------------------
    async def _file_for_item(self, t: Turn) -> list[Outgoing]:
        """`collecting`: a photo or video for the awaited item. A photo or video may arrive
        labelled as a file, or as the other kind: content decides."""
        att, awaiting = t.msg.attachment, t.data.get("awaiting")
        spec = SLOTS.get(awaiting)
        if spec is not None and spec.kind != "text":
            check = await self._check_file_async(att.path, spec.kind)
            if check.ok or att.kind in (spec.kind, "file"):
                return await self._fill_file_slot(t, awaiting, att.path, check)
            if spec.kind == "video" and att.kind == "image":
                if not self._file_options(t, "image"):
                    return [self._say(t, self.r("video_needed", question=self._pending_line(t)))]
                kept = await self._keep_pending(t, att.path, att.kind)  # said so, and kept for its own item
                kept[0].text = self.r("video_not_image") + "\n" + kept[0].text
                return kept
        return await self._file_during_appeal(t)

    async def _file_during_appeal(self, t: Turn) -> list[Outgoing]:
        """Once the route is known: a file is kept, and the creator asked which item it is."""
        if t.data.get("route"):
            return await self._keep_pending(t, t.msg.attachment.path, t.msg.attachment.kind)
        return await self._file_read(t)

    async def _file_while_asking(self, t: Turn) -> list[Outgoing]:
        """`file_slot`: asking which item an earlier file is. A file that fits the item the creator
        was at when that question came fills it (the question stays open); any other waits its turn."""
        pending = t.data.get("pending_file") or {}
        state, awaiting = (pending.get("back") or [None, None])[:2]
        spec = SLOTS.get(awaiting) if state == "collecting" else None
        if spec is not None and spec.kind != "text" and awaiting not in t.data.get("slots", {}):
            path = t.msg.attachment.path
            check = await self._check_file_async(path, spec.kind)
            if check.ok:
                ref = await self._store_file_async(t, path, check)
                if awaiting in review.ID_PHOTO_SLOTS:
                    await self._look_at_photo(ref, path)
                t.data["slots"][awaiting] = ref
                t.data.get("failures", {}).pop(awaiting, None)
                said = self.r("recorded_value", item=self._label(t, awaiting), value=self._kind_word(spec.kind))
                return [self._say(t, said + "\n" + self.r("ask_file_slot"))]
        return await self._file_during_appeal(t)

    async def _file_read(self, t: Turn) -> list[Outgoing]:
        """Any other moment: a screenshot is read for a failure prompt."""
        att = t.msg.attachment
        if att.kind == "image":
            check = await self._check_file_async(att.path, "image")
            if not check.ok:  # not a picture at all (a text file, a broken download): say so
                return [self._say(t, self.r("image_not_picture", error=check.error))]
            text = await self._ocr_text(att.path)
            if text is None:
                return [self._say(t, self.r("image_unreadable"))]
            result = self.matcher.match(text)
            self._record_match(t, result)
            if result.tier == "none" or result.vague:
                return [self._say(t, self.r("image_no_prompt"))]
            if in_appeal(t.conv.state) and result.tier == "confident":
                return self._new_prompt(t, result)
            return self._answer_match(t, result, room=False, source=text)
        return await self._file_ignored(t)

    async def _file_ignored(self, t: Turn) -> list[Outgoing]:
        return [self._say(t, self.r("file_idle"))]

    # -- checking, keeping and asking ------------------------------------------------------
    async def _check_file_async(self, path: Path, kind: str) -> v.Validation:
        # Decoding a video (or a big photo) takes long enough to hold every chat.
        return await off_loop_if_big(path, self._check_file, path, kind, always=kind == "video")

    def _check_file(self, path: Path, kind: str) -> v.Validation:
        max_bytes = int(self.settings.max_attachment_mb * 1024 * 1024)
        if kind == "image":
            return v.validate_image(path, max_bytes=max_bytes)
        return v.validate_video(path, max_bytes=max_bytes)

    async def _fill_file_slot(self, t: Turn, slot: str, path: Path, check: v.Validation) -> list[Outgoing]:
        want = SLOTS[slot].kind
        if not check.ok:
            return self._failed(t, slot, check.error)
        ref = await self._store_file_async(t, path, check)
        t.data["slots"][slot] = ref
        t.data.get("failures", {}).pop(slot, None)
        note = ""
        if slot in review.ID_PHOTO_SLOTS:
            await self._look_at_photo(ref, path)
            if ref.get("seen"):
                note = self.r("photo_seen", what=ref["seen"])
        if slot == "taobao_screenshot":
            text = await self._ocr_text(path, keep=True)
            if text:
                ref["ocr_text"] = text[:2000]
                result = self.matcher.match(text)
                if result.tier != "none" and not result.vague:
                    ref["ocr_prompt_id"] = result.id
                    if "error_prompt" not in t.data["slots"]:
                        t.data["prompt_id"] = result.id
                        note = self.r("screenshot_prompt_note", prompt=self._prompt_text(result.id, text))
        return self._ask_next(t, self.r("file_received", kind=self._kind_word(want), note=note) + "\n")

    async def _keep_pending(self, t: Turn, path: Path, kind: str) -> list[Outgoing]:
        """A file that is not the awaited item: kept, and the creator asked which item it is. Files
        sent in a row each wait their turn (none is replaced or dropped without a word)."""
        want = "video" if kind in ("video", "file") else "image"
        check = await self._check_file_async(path, want)
        if not check.ok and kind == "file":
            want, check = "image", await self._check_file_async(path, "image")
        if not check.ok:
            return [self._say(t, check.error + "\n" + self._pending_line(t))]
        ref = await self._store_file_async(t, path, check)
        if not self._file_options(t, want):
            self._delete_ref(t.writes, ref)
            return [self._say(t, self.r("file_unused", question=self._pending_line(t)))]
        if want == "image":
            await self._look_at_photo(ref, path)
        t.data["file_seq"] = t.data.get("file_seq", 0) + 1
        entry = {"ref": ref, "kind": want, "n": t.data["file_seq"]}
        if t.data.get("pending_file"):  # still asking about an earlier one: this one waits in order
            t.data.setdefault("queued_files", []).append(entry)
            return [self._say(t, self.r("file_queued", kind=self._kind_word(want), n=entry["n"]))]
        return self._ask_file(t, entry, [t.conv.state, t.data.get("awaiting")])

    def _file_options(self, t: Turn, kind: str) -> list:
        return [m for m in (self._missing(t) or self._materials(t)) if SLOTS[m.slot].kind == kind]

    def _ask_file(self, t: Turn, entry: dict, back: list) -> list[Outgoing]:
        options = self._file_options(t, entry["kind"]) or [
            m for m in self._materials(t) if SLOTS[m.slot].kind == entry["kind"]]
        t.data["pending_file"] = {**entry, "options": [m.slot for m in options], "back": back}
        t.conv.state, t.data["awaiting"] = "file_slot", "file_slot"
        lines = "\n".join(f"{i + 1}. {m.label}" for i, m in enumerate(options))
        seen = entry["ref"].get("seen")
        return [self._say(t, self.r("file_which_numbered", n=entry["n"], kind=self._kind_word(entry["kind"]),
                                    seen=self.r("photo_seen", what=seen) if seen else "", options=lines))]

    async def _state_file_slot(self, t: Turn, text: str) -> list[Outgoing]:
        pending = t.data.get("pending_file") or {}
        options = pending.get("options", [])
        choice = choice_number(text, len(options))
        if choice is None:
            self._not_understood(t, text)
            return [self._say(t, self.r("file_which_reask", count=len(options)))]
        t.data.pop("pending_file")
        said = ""
        if choice == 0:
            self._delete_ref(t.writes, pending["ref"])
            said = self.r("file_discarded", question="").strip()  # the question follows below
        else:
            slot = options[choice - 1]
            old = t.data["slots"].get(slot)
            if isinstance(old, dict):
                self._delete_ref(t.writes, old)
                said = self.r("updated")
            else:
                said = self.r("recorded_value", item=self._label(t, slot), value=self.r(
                    "file_ordinal", kind=self._kind_word(pending.get("kind", "image")), n=pending.get("n", 1)))
            t.data["slots"][slot] = pending["ref"]
        queue = t.data.get("queued_files") or []
        if queue:  # the next file sent in a row
            nxt = queue.pop(0)
            if not queue:
                t.data.pop("queued_files", None)
            # asked even when every item of its kind is filled (it may replace one): _ask_file
            out = self._ask_file(t, nxt, pending["back"])
            out[0].text = said + "\n" + out[0].text
            return out
        t.data.pop("file_seq", None)
        t.conv.state, t.data["awaiting"] = pending["back"]
        filled = t.conv.state == "collecting" and t.data.get("awaiting") in t.data["slots"]
        if choice == 0 and not filled:
            return [self._say(t, self.r("file_discarded", question=self._pending_line(t)))]
        if t.conv.state == "confirm":
            return self._summary(t, said + "\n")
        if filled:  # the awaited item was filled meanwhile (by this file, or one sent while asking)
            return self._ask_next(t, said + "\n")
        if t.conv.state != "collecting":
            return self._ask_next(t, said + "\n")
        return [self._say(t, said + "\n" + self.r("resume_item", item=self._label(t, t.data["awaiting"])))]

    async def _look_at_photo(self, ref: dict, path: Path) -> None:
        """What OCR sees in a photo (ID side, and hashes to compare with what was typed); nothing
        without OCR."""
        if self.ocr is None:
            return
        review.look(ref, await self._ocr_text(path))

    async def _store_file_async(self, t: Turn, path: Path, check: v.Validation) -> dict:
        # Encrypting a video of tens of MB would hold every chat.
        return await off_loop_if_big(path, self._store_file, t, path, check)

    def _store_file(self, t: Turn, path: Path, check: v.Validation) -> dict:
        ref_file = f"{self._user_key(t.msg.sender)}/{secrets.token_hex(8)}.enc"
        self.files.write(f"files/{ref_file}", self.vault.encrypt(Path(path).read_bytes()))
        ref = {"file": ref_file, "kind": check.kind or "file", "format": check.value}
        if check.width:
            ref["size"] = f"{check.width}×{check.height}"
        if check.duration_seconds:
            ref["seconds"] = round(check.duration_seconds, 1)
        return ref

    async def _ocr_text(self, path: Path, keep: bool = False) -> str | None:
        if self.ocr is None:
            return None
        from bot.ocr import OcrUnavailable

        try:
            result = await self.ocr.read(Path(path))
        except OcrUnavailable:
            return None
        except Exception as exc:  # OCR is best effort: a bad picture must not break the dialog
            log.info("ocr failed: %s", type(exc).__name__)
            return ""
        return result.text


register(Scene("file_slot", on_text=FilesScene._state_file_slot, on_file=FilesScene._file_while_asking,
               enter=FilesScene._ask_file, in_appeal=True))
