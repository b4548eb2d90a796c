"""Answers that any state may give before its own question: an FAQ entry or help about an item
(knowledge/faq.yaml, items), and how to reach the platform's people (with `handoff_to`, a note to
those contacts)."""
from __future__ import annotations

from datetime import datetime, timedelta

from bot.appeals.delivery import smtp_enabled
from bot.dialog.turn import CIRCLED, Turn, waiting_name
from bot.kb.responses import render
from bot.matching.intents import Reading
from bot.messages import Outgoing

HANDOFF_AGAIN_AFTER = timedelta(hours=1)  # a second 转人工 within this does not notify the admins again


class Answers:
    def _faq_answer(self, t: Turn, rd: Reading) -> str | None:
        """The answer to the question, about the item it names or else the awaited one."""
        item_slot = rd.item if rd.item not in (None, "this") else self._pending_item(t)
        item = self.kb.items.get(item_slot) if item_slot else None
        faq = next((f for f in self.kb.faq if f.id == rd.faq), None)
        fields = self._faq_fields(item)
        if faq is not None:
            if "{item" not in faq.answer:
                return render(faq.answer, **fields)
            if item is not None:
                key = {"why_item": "why", "what_item": "what", "where_item": "where"}.get(faq.id)
                if key and not getattr(item, key):
                    return self._item_help(item)
                return render(faq.answer, **fields)
        if item is not None and rd.question:
            return self._item_help(item)
        return None

    @staticmethod
    def _item_help(item) -> str:
        return "\n".join(x for x in (item.what or item.why, item.where) if x)

    def _faq_fields(self, item) -> dict:
        email = self.settings.appeal_email
        routes = self.kb.routes
        return {
            "item": item.label if item else "", "item_why": item.why if item else "",
            "item_what": (item.what or item.why) if item else "",
            "item_where": (item.where or item.what or item.why) if item else "",
            "appeal_email": email or self.r("email_unknown"),
            "expiry_hours": f"{self.settings.expiry_hours:g}",
            "reminder_minutes": f"{self.settings.reminder_minutes:g}",
            "online_materials": "".join(f"{CIRCLED[i]}{m.label};" for i, m in enumerate(routes["online"].materials)),
            "email_materials": "".join(f"{CIRCLED[i]}{m.label};" for i, m in enumerate(routes["email"].materials)),
            "delivery": self.r("delivery_smtp", email=email) if smtp_enabled(self.settings)
            else self.r("delivery_operator"),
        }

    def _human(self, t: Turn, room: bool = False, then: str = "") -> list[Outgoing]:
        """How to reach the platform's people; with `handoff_to`, a short note to those contacts."""
        out = []
        told = ""
        contacts = [c for c in self.settings.handoff_to if c != t.msg.sender] if not room else []
        if contacts:
            # Once an hour per creator (whichever account they wrote to): asking again says so
            # instead of paging the admins again.
            key = f"handoff:{t.msg.chat}:{t.msg.sender}"
            last = self.store.meta_value(key)
            if last and t.now - datetime.fromisoformat(last.decode()) < HANDOFF_AGAIN_AFTER:
                told = self.r("human_already_notified")
            else:
                note = self.r("handoff_note", user=t.msg.sender, case=self._case_summary(t))
                out = [Outgoing(chat=c, to=c, text=note) for c in contacts]
                t.writes.set_meta(key, t.now.isoformat().encode())
                told = self.r("human_notified")
        text = self.r("human") + ("\n" + told if told else "") + ("\n" + then if then else "")
        return [self._say(t, text, mention=room), *out]

    def _case_summary(self, t: Turn) -> str:
        """The state of a creator's case without personal data: prompt, route, progress."""
        total = len(self._materials(t)) if t.data.get("route") else 0
        return self.r("handoff_case", prompt=t.data.get("prompt_id") or "-",
                      route=self.kb.routes[t.data["route"]].title if total else "-",
                      done=total - len(self._missing(t)) if total else 0, total=total,
                      state=waiting_name(self.kb, t.conv))
