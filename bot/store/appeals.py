"""The store's queries of appeals: the appeals and their history, an operator's status change, the
email thread with the platform (our emails and its replies), the IMAP position, the send queue and
packages past their retention. A mixin of `SqlStore` (it runs on the backend's `_query`/`_exec`)."""
from __future__ import annotations

from datetime import datetime

from bot.messages import Outgoing
from bot.store.records import Writes, _iso


class AppealQueries:
    """Appeals, their history and email thread, the send queue, the IMAP position (a mixin of `SqlStore`)."""

    # -- appeals ---------------------------------------------------------------------------------
    APPEAL_KEYS = ("appeal_id", "sender", "route", "prompt_id", "status", "masked_identity", "created_at",
                   "status_at", "message_id", "sent_at", "note", "package_deleted", "account")

    def appeals(self, limit: int = 20, status: str | None = None, sender: str | None = None,
                appeal_id: str | None = None, offset: int = 0) -> list[dict]:
        """Appeals, newest first (no personal data: the identity is masked)."""
        where, args = [], []
        for column, value in (("status", status), ("sender", sender), ("appeal_id", appeal_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        keys = self.APPEAL_KEYS
        rows = self._query(f"SELECT {', '.join(keys)} FROM appeals"
                           + (f" WHERE {' AND '.join(where)}" if where else "")
                           + f" ORDER BY created_at DESC, {self.SEQ} DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [dict(zip(keys, r)) for r in rows]

    def appeal(self, appeal_id: str) -> dict | None:
        rows = self.appeals(appeal_id=appeal_id)
        return rows[0] if rows else None

    def appeal_history(self, appeal_id: str) -> list[dict]:
        rows = self._query(f'SELECT status, at, "by", note FROM appeal_history WHERE appeal_id = ? '
                           f"ORDER BY at, {self.SEQ}", (appeal_id,))
        return [dict(zip(("status", "at", "by", "note"), r)) for r in rows]

    def change_status(self, appeal_id: str, status: str, at: datetime, by: str, note: str | None,
                      replies: list[Outgoing]) -> None:
        """An operator's status change and the creator's notification, committed together."""
        writes = Writes()
        writes.set_status(appeal_id, status, at, by, note)
        self.commit_turn(None, None, at, writes, replies)

    # -- the appeal's email thread, and the IMAP position ----------------------------------------
    THREAD_KEYS = ("kind", "message_id", "in_reply_to", "subject", "at", "body", "suggested")

    def thread(self, appeal_id: str) -> list[dict]:
        """The appeal's emails, oldest first: dicts of THREAD_KEYS (`body` decrypted, None for ours)."""
        rows = self._query(f"SELECT {', '.join(self.THREAD_KEYS)} FROM appeal_thread WHERE appeal_id = ? "
                           f"ORDER BY at, {self.SEQ}", (appeal_id,))
        out = []
        for row in rows:
            d = dict(zip(self.THREAD_KEYS, row))
            if d["body"] is not None:
                d["body"] = self._vault.decrypt(bytes(d["body"])).decode()
            out.append(d)
        return out

    def thread_has(self, appeal_id: str, kind: str, message_id: str) -> bool:
        """The thread already holds this email (a reply seen before)."""
        return bool(self._query("SELECT 1 FROM appeal_thread WHERE appeal_id = ? AND kind = ? AND message_id = ?",
                                (appeal_id, kind, message_id)))

    def appeal_of_message_id(self, message_id: str) -> str | None:
        """The appeal one of our emails (sent or supplement_sent) with this Message-ID belongs to."""
        rows = self._query("SELECT appeal_id FROM appeal_thread WHERE message_id = ? "
                           "AND kind IN ('sent', 'supplement_sent') ORDER BY at LIMIT 1", (message_id,))
        return rows[0][0] if rows else None

    def appeal_of_reply(self, message_id: str) -> str | None:
        """The appeal a reply of the platform we took (kind 'reply') with this Message-ID belongs to."""
        rows = self._query("SELECT appeal_id FROM appeal_thread WHERE message_id = ? AND kind = 'reply' "
                           "ORDER BY at LIMIT 1", (message_id,))
        return rows[0][0] if rows else None

    def appeals_with_subject(self, subject: str) -> list[str]:
        """The appeals whose first email (kind 'sent') had this subject."""
        rows = self._query("SELECT DISTINCT appeal_id FROM appeal_thread WHERE kind = 'sent' AND subject = ? "
                           "ORDER BY appeal_id", (subject,))
        return [r[0] for r in rows]

    def suggested_status(self, appeal_id: str) -> str | None:
        """What the latest reply of the platform suggests (resolved, need_more, rejected), or None."""
        rows = self._query(f"SELECT suggested FROM appeal_thread WHERE appeal_id = ? AND kind = 'reply' "
                           f"ORDER BY at DESC, {self.SEQ} DESC LIMIT 1", (appeal_id,))
        return rows[0][0] if rows else None

    def imap_position(self, mailbox: str) -> tuple[int, int] | None:
        """(uidvalidity, last_uid) read so far in `mailbox`, or None before the first poll."""
        rows = self._query("SELECT uidvalidity, last_uid FROM imap_state WHERE mailbox = ?", (mailbox,))
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    # -- the send queue, and packages past their retention ---------------------------------------
    def due_sends(self, now: datetime) -> list[tuple[str, int]]:
        return [tuple(r) for r in self._query(
            "SELECT appeal_id, attempts FROM sends WHERE next_at <= ? ORDER BY next_at", (_iso(now),))]

    def claim_due_sends(self, now: datetime) -> list[tuple[str, int]]:
        """The due sends this process takes: with several processes each row is claimed by one,
        and not retried by another before `SEND_LEASE` has passed (a process that died mid-send)."""
        if self.SEND_LEASE is None:
            return self.due_sends(now)
        rows = self._query(
            "UPDATE sends SET next_at = ? WHERE appeal_id IN (SELECT appeal_id FROM sends WHERE next_at <= ? "
            f"ORDER BY next_at{self.SKIP_LOCKED}) RETURNING appeal_id, attempts",
            (_iso(now + self.SEND_LEASE), _iso(now)))
        return [tuple(r) for r in rows]

    def pending_sends(self) -> int:
        return self._query("SELECT COUNT(*) FROM sends")[0][0]

    def expire_packages(self, before: datetime, at: datetime, delete, limit: int = 100) -> list[str]:
        """Packages whose appeal ended (resolved/rejected) before `before`: each claimed by one
        process, deleted with `delete(appeal_id)` and marked, in one transaction."""
        with self.transaction():
            ids = [r[0] for r in self._query(
                "SELECT appeal_id FROM appeals WHERE status IN ('resolved', 'rejected') AND status_at < ? "
                f"AND package_deleted = 0 ORDER BY status_at LIMIT ?{self.SKIP_LOCKED}", (_iso(before), limit))]
            for appeal_id in ids:
                delete(appeal_id)
                self._exec("UPDATE appeals SET package_deleted = 1 WHERE appeal_id = ?", (appeal_id,))
                self._exec('INSERT INTO appeal_history (appeal_id, status, at, "by", note) VALUES (?, ?, ?, ?, ?)',
                           (appeal_id, "package_deleted", _iso(at), "bot", None))
        return ids
