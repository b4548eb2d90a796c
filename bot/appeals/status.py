"""Operators' appeal statuses: shared by the CLI (`appeals status`), the admin chat command
(`#appeal`) and, later, the web console. A change is recorded (who, when, note) and the creator is
told in their DM through the outbox, in the same transaction, whichever process made it: a running
bot sends the committed notification on its next delivery.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone

from bot.appeals import supplement
from bot.kb.responses import render
from bot.messages import Outgoing
from bot.store.records import OPERATOR_STATUSES, Writes

# What operators read for each status (#appeals, the web console).
STATUS_NAMES = {"ready": "待提交", "queued": "发送中", "sent": "已发送", "failed": "发送失败", "replied": "平台已回复",
                "reviewing": "审核中", "resolved": "已通过", "rejected": "未通过", "need_more": "需补充"}
# The admin chat command's Chinese names.
STATUS_WORDS = {"审核中": "reviewing", "已通过": "resolved", "通过": "resolved", "未通过": "rejected",
                "驳回": "rejected", "需补充": "need_more", "补充材料": "need_more"}


class StatusError(ValueError):
    pass


def item_slots(kb, appeal: dict, words: str | list[str] | None) -> list[str]:
    """The items an operator names for 需补充 (slot names, labels or their numbers in the route's
    list, separated by commas or spaces), in the route's order; StatusError for an unknown one."""
    if not words:
        return []
    if isinstance(words, str):
        words = [w for w in re.split(r"[\s,，、;；]+", words) if w]
    materials = kb.routes[appeal["route"]].materials
    picked = set()
    for w in words:
        for i, m in enumerate(materials, start=1):
            if w in (m.slot, m.label, str(i), kb.items[m.slot].label if m.slot in kb.items else m.label):
                picked.add(m.slot)
                break
        else:
            raise StatusError(f"unknown item {w!r} for the {appeal['route']} route "
                              f"(one of: {', '.join(m.slot for m in materials)})")
    return [m.slot for m in materials if m.slot in picked]


def change_status(settings, store, kb, appeal_id: str, status: str, by: str, note: str | None = None,
                  now: datetime | None = None, items: str | list[str] | None = None) -> dict:
    status = STATUS_WORDS.get(status, status)
    if status not in OPERATOR_STATUSES:
        raise StatusError(f"unknown status {status!r} (one of: {', '.join(OPERATOR_STATUSES)})")
    appeal = store.appeal(appeal_id)
    if appeal is None:
        raise StatusError(f"no appeal {appeal_id}")
    slots = item_slots(kb, appeal, items) if status == "need_more" else []
    now = now or datetime.now(timezone.utc)
    note = (note or "").replace("\x00", "").strip().rstrip("。.") or None  # NUL: never meant, refused by PostgreSQL
    note_text = render(kb.responses["appeal_status_note"], note=note) if note else ""
    if slots:
        labels = {m.slot: m.label for m in kb.routes[appeal["route"]].materials}
        text = render(kb.responses["appeal_status_need_more_items"], appeal_id=appeal_id, note=note_text,
                      items="、".join(labels[s] for s in slots))
    else:
        text = render(kb.responses[f"appeal_status_{status}"], appeal_id=appeal_id, note=note_text,
                      retention_days=f"{settings.appeal_retention_days:g}")
    writes = Writes()
    writes.set_status(appeal_id, status, now, by, note)
    if status == "need_more":  # the creator's "补充" asks for these (none named: the creator says which)
        supplement.set_request(writes, appeal_id, slots, note, now)
    else:
        supplement.clear_request(writes, appeal_id)
    store.commit_turn(None, None, now, writes, [Outgoing(chat=appeal["sender"], to=appeal["sender"],
                                                         text=text.strip(), account=appeal.get("account") or None)])
    return store.appeal(appeal_id)


def thread_events(store, appeal_id: str) -> list[dict]:
    """One appeal's life in order: status changes and the emails both ways (for `show`, 进度, the console)."""
    events = [{"at": h["at"], "kind": "status", "status": h["status"], "by": h["by"], "text": h.get("note") or ""}
              for h in store.appeal_history(appeal_id)]
    for m in store.thread(appeal_id):
        events.append({"at": m["at"], "kind": m["kind"], "status": m.get("suggested") or "", "by": "",
                       "text": m.get("body") or m.get("subject") or "", "message_id": m.get("message_id")})
    return sorted(events, key=lambda e: e["at"])
