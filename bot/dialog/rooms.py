"""Group chats: remedies and the appeal hint only; appeals are collected in a DM, and the bot never
asks for, nor echoes, personal data in a room."""
from __future__ import annotations

from bot.dialog import validators as v
from bot.dialog.turn import Turn
from bot.messages import Outgoing


class Rooms:
    async def _room(self, t: Turn) -> list[Outgoing]:
        msg = t.msg
        if v.find_id_numbers(msg.text):
            # Never echo it; ask them to recall the message.
            return [self._say(t, self.r("room_id_warning"), mention=True)]
        if msg.attachment is not None:
            if not msg.mention:
                return []
            if msg.attachment.kind == "image":
                text = await self._ocr_text(msg.attachment.path)
                if text and v.find_id_numbers(text):
                    return [self._say(t, self.r("room_id_photo_warning"), mention=True)]
                if text:
                    result = self.matcher.match(text)
                    if result.tier != "none" and not result.vague:
                        return self._answer_match(t, result, room=True, source=text)
            return [self._say(t, self.r("room_no_files"), mention=True)]
        if t.conv.state == "choice":
            picked = self._pick_choice(t)
            if picked is not None:
                return picked
        rd = t.reading
        if rd.command == "help" and msg.mention:
            return [self._say(t, self.r("help"), mention=True)]
        result = self._match(t)
        self._record_match(t, result)
        if result.tier == "confident":
            return self._answer_match(t, result, room=True)
        if not msg.mention:
            return []
        if rd.has("appeal_request") or rd.command == "appeal":
            # appeals are collected in a DM only: the hint, and where to go
            known = t.data.get("prompt_id")
            hint = self.r("room_appeal_prompt", prompt=self._prompt_text(known, name=t.data.get("prompt_name"))) \
                if known and self.kb.group_of(known).appeal else ""
            return [self._say(t, self.r("room_appeal_dm", hint=hint), mention=True)]
        small_talk = self._small_talk(t, result, room=True)
        if small_talk is not None:
            return small_talk
        if result.tier == "suggest":
            return self._answer_match(t, result, room=True)
        return [self._say(t, self.r("not_understood"), mention=True)]
