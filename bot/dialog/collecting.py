"""Scene `collecting`: one appeal item at a time (awaiting = the slot name), the next one asked after
each (`_ask_next`, which ends at the summary). A value is taken from inside a sentence
(`extract.py`), never the whole sentence; a wrong kind of value is said so; 修改 goes back to an
item. Files for an item: `files.py`."""
from __future__ import annotations

from bot.dialog import validators as v
from bot.dialog.extract import extract, kind_of_other_value
from bot.dialog.files import FilesScene
from bot.dialog.registry import Scene, register
from bot.dialog.slots import MILITARY_SLOT, SLOTS
from bot.dialog.turn import Turn, plain
from bot.messages import Outgoing
from bot.privacy import has_mobile_number


class CollectingScene:
    def _ask_next(self, t: Turn, prefix: str = "") -> list[Outgoing]:
        missing = self._missing(t)
        self._step_filled(t)
        queued = t.data.get("queued_files")
        if queued and not t.data.get("pending_file"):
            # a file still waiting to be placed (its question was interrupted, e.g. by 修改): asked
            # about before anything else, then on to what would have come next
            entry = queued.pop(0)
            if not queued:
                t.data.pop("queued_files")
            if t.data.get("editing") or not missing:
                back = ["confirm", "confirm"]
            else:
                back = ["military", "military"] if missing[0].slot == MILITARY_SLOT else ["collecting", missing[0].slot]
            out = self._ask_file(t, entry, back)
            out[0].text = prefix + out[0].text
            return out
        if t.data.pop("editing", False) or not missing:
            return self._summary(t, prefix)
        m = missing[0]
        total = len(self._materials(t))
        number = f"({total - len(missing) + 1}/{total}) "
        self._step(t, "item", m.slot)  # reached: asked for the first time in this attempt
        if m.slot == MILITARY_SLOT:
            t.conv.state, t.data["awaiting"] = "military", "military"
            return [self._say(t, prefix + number + self.r("ask_military"))]
        t.conv.state, t.data["awaiting"] = "collecting", m.slot
        if m.slot == "error_prompt" and t.data.get("prompt_id"):
            shown = self._prompt_text(t.data["prompt_id"], name=t.data.get("prompt_name"))
            return [self._say(t, prefix + number + self.r("ask_error_prompt_known", prompt=shown))]
        return [self._say(t, prefix + number + self._ask(m.slot))]

    async def _state_collecting(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        slot = t.data.get("awaiting")
        spec = SLOTS.get(slot)
        if spec is None or slot not in self.kb.items:
            return self._ask_next(t)
        label = self.kb.items[slot].label
        if slot == "error_prompt":
            return self._take_error_prompt(t, text)
        if rd.unsure:
            return [self._say(t, self._item_help(self.kb.items[slot]) + "\n" + self._pending_line(t, again=True))]
        if rd.chit_chat or rd.consent_only or (rd.polarity is not None and len(plain(text)) <= 4):
            if rd.polarity is False:
                return [self._say(t, self.r("item_required", item=label,
                                            expiry_hours=f"{self.settings.expiry_hours:g}"))]
            return [self._say(t, self.r("reask_item", item=label))]
        if spec.kind != "text":
            return self._failed(t, slot, self.r("needs_file", kind=self._kind_word(spec.kind)))
        if slot != "id_number" and v.find_id_numbers(text):
            return self._failed(t, slot, self.r("id_number_in_wrong_item", item=label))
        if slot != "contact" and has_mobile_number(text):
            return self._failed(t, slot, self.r("mobile_in_wrong_item", item=label))
        # No value of this item's kind in the message (values are taken before: _take_value): a
        # sentence is never stored as a value. Asked again, saying what was missing.
        self._not_understood(t, text)
        failures = t.data.setdefault("failures", {})
        failures[slot] = failures.get(slot, 0) + 1
        text = self.r("value_missing", item=label, question=self._ask(slot))
        if failures[slot] >= self.settings.max_validation_failures:
            text += "\n\n" + self.r("too_many_failures")
        return [self._say(t, text)]

    def _take_value(self, t: Turn, slot: str, text: str) -> list[Outgoing] | None:
        """The awaited item's value found inside the message (never the whole message unless it is
        only the value); the rest of the message is read for a question. None: no value here."""
        rd = t.reading
        label = self._label(t, slot)
        bare_ok = not (rd.command or rd.question or rd.faq or rd.chit_chat or rd.unsure
                       or rd.intents - {"thanks", "greeting", "edit"})  # an edit naming no item was handled before
        found = extract(slot, text, bare_ok=bare_ok)
        other = kind_of_other_value(slot, text) if found is None or found.value is None else None
        if other:  # an ID number at the name, a mobile at the ID
            key = "id_number_in_wrong_item" if other == "id_number" else "mobile_in_wrong_item"
            return self._failed(t, slot, self.r(key, item=label))
        if found is None or (found.value is None and found.error is None):
            return None
        if found.value is None:
            return self._failed(t, slot, found.error)
        said = self._store_value(t, slot, found)
        rest_text = found.rest
        if rest_text and not t.data.get("editing"):
            more, rest_text = self._more_values(t, rest_text)  # "我叫张三，身份证号是…": both kept
            said = "\n".join([said, *more])
        extra = ""
        if rest_text:
            rest = self.reader.read(rest_text)
            if rest.question or rest.faq:
                extra = self._faq_answer(t, rest) or self.r("question_not_known")
        replies = self._ask_next(t, said + "\n" + (extra + "\n" if extra else ""))
        return replies

    def _store_value(self, t: Turn, slot: str, found) -> str:
        """Keep an extracted value; what the bot says about it (masked for the ID number)."""
        t.data["slots"][slot] = found.value
        t.data.get("failures", {}).pop(slot, None)
        if slot == "id_number":
            return self.r("recorded_id", masked=v.mask_id_number(found.value))
        if found.bare:
            return self.r("recorded")
        return self.r("recorded_value", item=self._label(t, slot), value=found.value)

    def _more_values(self, t: Turn, text: str) -> tuple[list[str], str]:
        """Other items' values in the rest of the message, each found by its label, quotes or its
        own pattern (never the bare rest): kept in the route's order, so a message with two things
        loses neither. An invalid one is said and not kept (it is asked for in its turn)."""
        said: list[str] = []
        for m in self._missing(t):
            if not text:
                break
            if SLOTS.get(m.slot) is None or SLOTS[m.slot].kind != "text":
                continue
            found = extract(m.slot, text, bare_ok=False)
            if found is None or (found.value is None and found.error is None):
                continue
            text = found.rest
            if found.value is None:
                label = self._label(t, m.slot)
                said.append(found.error if label in found.error else f"【{label}】{found.error}")
                continue
            said.append(self._store_value(t, m.slot, found))
        return said, text

    def _take_error_prompt(self, t: Turn, text: str) -> list[Outgoing]:
        rd = t.reading
        prompt_id = t.data.get("prompt_id") or 0
        prompt = self.kb.prompt(prompt_id)
        if prompt and rd.polarity is True and rd.chit_chat:
            value = self._prompt_text(prompt.id, name=t.data.get("prompt_name"))
        else:
            value = " ".join(text.split())
            if v.find_id_numbers(value) or has_mobile_number(value):
                return self._failed(t, "error_prompt", self.r("id_number_in_wrong_item", item=self.kb.items["error_prompt"].label))
            if len(value) < 4 or len(value) > 300 or rd.polarity is False and rd.chit_chat:
                return self._failed(t, "error_prompt", self.r("error_prompt_invalid"))
            result = self._match(t)
            if result.tier == "confident":  # the creator typed the prompt: it is now the case's prompt
                t.data["prompt_id"] = result.id
        t.data["slots"]["error_prompt"] = value
        return self._ask_next(t, self.r("recorded") + "\n")

    def _failed(self, t: Turn, slot: str, error: str) -> list[Outgoing]:
        failures = t.data.setdefault("failures", {})
        failures[slot] = failures.get(slot, 0) + 1
        text = f"{error}\n{self._question_for(t, slot)}"
        if failures[slot] >= self.settings.max_validation_failures:
            text += "\n\n" + self.r("too_many_failures")
        return [self._say(t, text)]

    def _question_for(self, t: Turn, slot: str) -> str:
        if slot == MILITARY_SLOT and t.conv.state == "military":
            return self.r("ask_military")
        return self._ask(slot)

    def _edit(self, t: Turn, slot: str) -> list[Outgoing]:
        """Go back to an item (its old value stays until a new one is given); then on to where the
        creator was (the summary, when they were there)."""
        if t.conv.state == "confirm":
            t.data["editing"] = True
        pending = t.data.pop("pending_file", None)
        if pending:  # the file being asked about waits in the queue
            t.data.setdefault("queued_files", []).insert(0, {k: pending[k] for k in ("ref", "kind", "n") if k in pending})
        t.data.pop("before_quit", None)
        label = self._label(t, slot)
        if slot == MILITARY_SLOT:
            t.conv.state, t.data["awaiting"] = "military", "military"
            return [self._say(t, self.r("edit_item", item=label, ask=self.r("ask_military")))]
        t.conv.state, t.data["awaiting"] = "collecting", slot
        return [self._say(t, self.r("edit_item", item=label, ask=self._ask(slot)))]


register(Scene("collecting", on_text=CollectingScene._state_collecting, on_file=FilesScene._file_for_item,
               enter=CollectingScene._ask_next, in_appeal=True))
