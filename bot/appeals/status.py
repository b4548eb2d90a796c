"""Operators' appeal statuses: shared by the CLI (`appeals status`), the admin chat command
(`#appeal`) and, later, the web console. A change is recorded (who, when, note) and the creator is
told in their DM through the outbox, in the same transaction, whichever process made it: a running
bot sends the committed notification on its next delivery.
"""
from __future__ import annotations

from datetime import datetime, timezone

from bot.kb.responses import render
from bot.messages import Outgoing
from bot.store.base import OPERATOR_STATUSES

# The admin chat command's Chinese names.
STATUS_WORDS = {"审核中": "reviewing", "已通过": "resolved", "通过": "resolved", "未通过": "rejected",
                "驳回": "rejected", "需补充": "need_more", "补充材料": "need_more"}


class StatusError(ValueError):
    pass


def change_status(settings, store, kb, appeal_id: str, status: str, by: str, note: str | None = None,
                  now: datetime | None = None) -> dict:
    status = STATUS_WORDS.get(status, status)
    if status not in OPERATOR_STATUSES:
        raise StatusError(f"unknown status {status!r} (one of: {', '.join(OPERATOR_STATUSES)})")
    appeal = store.appeal(appeal_id)
    if appeal is None:
        raise StatusError(f"no appeal {appeal_id}")
    now = now or datetime.now(timezone.utc)
    note = (note or "").replace("\x00", "").strip() or None  # NUL: never meant, refused by PostgreSQL
    text = render(kb.responses[f"appeal_status_{status}"], appeal_id=appeal_id,
                  note=render(kb.responses["appeal_status_note"], note=note) if note else "",
                  retention_days=f"{settings.appeal_retention_days:g}")
    store.change_status(appeal_id, status, now, by, note,
                        [Outgoing(chat=appeal["sender"], to=appeal["sender"], text=text.strip(),
                                  account=appeal.get("account") or None)])
    return store.appeal(appeal_id)
