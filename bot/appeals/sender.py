"""The durable send queue for email-route packages, worked on every engine tick.

A row of `sends` is committed with the 确认 turn (status `queued`). Each tick takes the due rows:
one SMTP attempt each, then the new status, the queue row and the notifications (creator, and
admins on failure) are committed together through the outbox. Temporary failures retry with
backoff; permanent ones (5xx) mark the appeal `failed`. A crash between "accepted by the server"
and "marked sent" sends once more with the same Message-ID on the next tick.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser

from bot import metrics
from bot.appeals import delivery, supplement
from bot.kb.responses import render
from bot.messages import Outgoing
from bot.store import Writes

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12  # about a day of retries with the backoff below
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=4)


def backoff(attempts: int) -> timedelta:
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1))


def _crash_point(name: str) -> None:
    """Test hook (see tests/crashing_replay.py)."""


class AppealSender:
    def __init__(self, engine):
        self.engine = engine

    def _r(self, name: str, **fields) -> str:
        return render(self.engine.snapshot.kb.responses[name], **fields)

    def _tell(self, appeal: dict, text: str) -> Outgoing:
        # through the account the creator appealed to (several accounts may share the store)
        return Outgoing(chat=appeal["sender"], to=appeal["sender"], text=text, account=appeal.get("account") or None)

    def _tell_admins(self, text: str) -> list[Outgoing]:
        return [Outgoing(chat=a, to=a, text=text) for a in self.engine.settings.admins]

    def _give_up(self, writes: Writes, appeal: dict, now: datetime, status: str, reason: str,
                 creator_text: str, key: str) -> list[Outgoing]:
        """Out of the queue with `status` and the reason; the creator and the admins are told."""
        appeal_id = appeal["appeal_id"]
        writes.drop_send(key)
        writes.set_status(appeal_id, status, now, "bot", reason)
        return [self._tell(appeal, self._r(creator_text, appeal_id=appeal_id)),
                *self._tell_admins(self._r("admin_appeal_failed", appeal_id=appeal_id, reason=reason))]

    async def work(self, now: datetime) -> list[Outgoing]:
        """Attempt every due send once; returns the notifications committed."""
        store, settings = self.engine.store, self.engine.settings
        out: list[Outgoing] = []
        for key, attempts in store.claim_due_sends(now):  # each claimed by one process
            # the first email is keyed by the appeal id; a supplement's follow-up by "<id>#s<round>"
            appeal_id, round_no = supplement.parse_send_key(key)
            appeal = store.appeal(appeal_id)
            writes = Writes()
            replies: list[Outgoing] = []
            if appeal is None or appeal["status"] not in ("queued", "ready"):
                writes.drop_send(key)
                store.commit_turn(None, None, now, writes, [])
                continue
            if not delivery.smtp_enabled(settings):  # SMTP was switched off: the operator submits it
                writes.drop_send(key)
                writes.set_status(appeal_id, "ready", now, "bot", "SMTP 未配置")
                store.commit_turn(None, None, now, writes, [])
                continue
            try:
                prepared = await asyncio.to_thread(delivery.prepare, settings, self.engine.vault, appeal_id,
                                                   store.files, round_no)
                await delivery.send(settings, prepared)
            except delivery.TooLarge as exc:
                log.warning("appeal %s too large to email", appeal_id)
                metrics.SMTP_SENDS.labels("too_large").inc()
                replies = self._give_up(writes, appeal, now, "ready", exc.reason, "appeal_too_large", key)
            except delivery.SendError as exc:
                attempts += 1
                metrics.SMTP_SENDS.labels("failed" if exc.permanent or attempts >= MAX_ATTEMPTS else "retry").inc()
                if exc.permanent or attempts >= MAX_ATTEMPTS:
                    log.warning("appeal %s: send failed for good (%s)", appeal_id, exc.reason)
                    replies = self._give_up(writes, appeal, now, "failed", exc.reason, "appeal_send_failed", key)
                else:
                    log.info("appeal %s: send attempt %d failed (%s); retrying", appeal_id, attempts, exc.reason)
                    writes.queue_send(key, now + backoff(attempts), attempts, exc.reason)
            except Exception as exc:  # a broken package: the operator must look at it
                log.error("appeal %s: cannot prepare the email (%s)", appeal_id, type(exc).__name__)
                metrics.SMTP_SENDS.labels("error").inc()
                replies = self._give_up(writes, appeal, now, "failed", type(exc).__name__, "appeal_send_failed", key)
            else:
                _crash_point("after_smtp")
                metrics.SMTP_SENDS.labels("sent").inc()
                log.info("appeal %s sent (%d bytes%s)", appeal_id, len(prepared.data),
                         f", re-encoded {len(prepared.reencoded)}" if prepared.reencoded else "")
                writes.drop_send(key)
                writes.set_status(appeal_id, "sent", now, "bot", None,
                                  supplement.followup_message_id(appeal_id, round_no))
                # every email of the thread is kept: replies are matched by its Message-ID (bot/appeals/imap.py)
                headers = BytesParser(policy=policy.default).parsebytes(prepared.data, headersonly=True)
                subject, in_reply_to = headers["Subject"], headers["In-Reply-To"]
                writes.add_thread(appeal_id, "supplement_sent" if round_no else "sent", now,
                                  message_id=supplement.followup_message_id(appeal_id, round_no),
                                  subject=str(subject) if subject else None,
                                  in_reply_to=str(in_reply_to) if in_reply_to else None)
                replies = [self._tell(appeal, self._r("appeal_supplement_sent" if round_no else "appeal_sent",
                                                      appeal_id=appeal_id, email=settings.appeal_email))]
            store.commit_turn(None, None, now, writes, replies)
            out += replies
        return out
