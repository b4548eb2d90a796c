"""State that survives restarts, in one interface over two backends (`SqliteStore`, `PgStore`):
conversations, processed message ids, appeals, stats, and the outbox of replies to send.

Conversation data (collected slots, which may hold an ID number) and outbox payloads are stored
encrypted with the vault; the other tables hold no personal data (masked identities, redacted
unmatched texts: `unmatched` for idle messages that matched no failure prompt, `unmatched_waiting` for
messages not understood while the bot waited for an answer, keyed by the state and the awaited item).

One message is one transaction (`commit_turn`): the conversation, the processed id, the counters
and the replies are committed together or not at all. Transports send from the outbox and mark
each reply sent afterwards, so a crash either leaves nothing of a turn (the redelivered message is
handled as new) or all of it (the redelivery is a duplicate and its replies are still unsent).

The SQL here is written once, with `?` placeholders, in the dialect both backends share
(`ON CONFLICT`, `RETURNING`); a backend supplies the connection handling, the migrations, the
cross-process locks (`turn`, `exclusive`) and the few words that differ (`SEQ`, `SKIP_LOCKED`).
"""
from __future__ import annotations

import json
import os
import secrets
import socket
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta, timezone

from bot import metrics
from bot.appeals.crypto import VaultError
from bot.messages import Outgoing
from bot.store.appeals import AppealQueries
from bot.store.funnel import FunnelQueries
from bot.store.operators import OperatorQueries
from bot.store.records import (
    DEFAULT_ACCOUNT, AlreadyProcessed, Conversation, KeyMismatch, TurnHold, Writes, _iso, _parse,
)
from bot.store.transcripts import TranscriptQueries

KEY_CHECK = b"dayu-bot key check v1"


def _payload(r: Outgoing) -> dict:
    return {"chat": r.chat, "to": r.to, "text": r.text, "mention": r.mention, "prompt_id": r.prompt_id,
            "state": r.state, "awaiting": r.awaiting, "appeal_id": r.appeal_id}


class SqlStore(AppealQueries, OperatorQueries, TranscriptQueries, FunnelQueries):
    """The store's interface and its SQL; see the module docstring. The queries of appeals and of
    operators are mixins (`appeals.py`, `operators.py`); what a turn writes is `records.Writes`."""

    kind = "?"
    SEQ = "rowid"  # a column that orders rows by insertion
    SKIP_LOCKED = ""  # claims: " FOR UPDATE SKIP LOCKED" where other processes compete
    SEND_LEASE: timedelta | None = None  # how long a claimed send is not retried by others
    OUTBOX_LEASE = timedelta(seconds=30)  # how long a claimed reply is not sent by others

    def __init__(self, vault, files, account: str = DEFAULT_ACCOUNT, outbox_lease_seconds: float | None = None):
        self._vault = vault
        self.files = files
        self.account = account or DEFAULT_ACCOUNT
        # This process, as the outbox's claims name it (unique: two processes of one account
        # never hold each other's rows; a backend with one process per account may use the account).
        self.instance = f"{self.account}/{socket.gethostname()}:{os.getpid()}/{secrets.token_hex(4)}"
        if outbox_lease_seconds is not None:
            self.OUTBOX_LEASE = timedelta(seconds=outbox_lease_seconds)
        self.migrations_applied: list[int] = []

    # -- what a backend provides ------------------------------------------------------------
    def _exec(self, sql: str, args=()) -> int:
        """Run one statement; returns the number of rows it changed."""
        raise NotImplementedError

    def _query(self, sql: str, args=()) -> list[tuple]:
        raise NotImplementedError

    @contextmanager
    def transaction(self):
        raise NotImplementedError
        yield

    @asynccontextmanager
    async def turn(self, key: tuple[str, str], message_id: str | None = None, wait: bool = True):
        """Hold one conversation for a turn, across processes, and read it: yields a `TurnHold`
        (falsy when `wait` is False and another process holds it). The base (one process) has
        nothing to hold."""
        yield self._hold(key, message_id)

    def _hold(self, key: tuple[str, str], message_id: str | None) -> TurnHold:
        return TurnHold(True, bool(message_id) and self.is_processed(message_id), lambda: self.load(*key))

    def _batch(self, statements: list[tuple[str, tuple]], returning: int | None = None) -> list:
        """Run statements in order, in the current transaction; returns each one's changed-row
        count, or for index `returning` its rows. A backend with a server sends them in one go."""
        out = []
        for i, (sql, args) in enumerate(statements):
            out.append(self._query(sql, args) if i == returning else self._exec(sql, args))
        return out

    @contextmanager
    def exclusive(self, name: str):
        """One process at a time for periodic work (the janitor); yields False when taken."""
        yield True

    def schema_version(self) -> int:
        raise NotImplementedError

    def migrate(self) -> list[int]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """Where the data is, for humans (no password)."""
        raise NotImplementedError

    def ping(self) -> None:
        """Raise unless the store answers now (/readyz, /metrics); a backend bounds the wait."""
        self._query("SELECT 1")

    # -- one turn, one transaction ------------------------------------------------------
    def commit_turn(self, conv: Conversation | None, message_id: str | None, at: datetime,
                    writes: Writes, replies: list[Outgoing]) -> None:
        """Commit a turn whole: conversation, processed id, counters, appeals, outbox rows.

        Sets `outbox_id` on each reply. Raises (and commits nothing) on any error, and
        `AlreadyProcessed` when another process committed `message_id` first."""
        blobs = [self._vault.encrypt(json.dumps(_payload(r), ensure_ascii=False).encode()) for r in replies]
        sts: list[tuple[str, tuple]] = []
        for sender in writes.deleted_users:
            sts += self._delete_user_sql(sender)
        if conv is not None:
            sts.append(self._save_sql(conv))
        processed_at = len(sts)
        if message_id is not None:
            sts.append(("INSERT INTO processed (message_id, at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                        (message_id, _iso(at))))
        if writes.events:  # one statement for all
            sts.append(("INSERT INTO events (kind, prompt_id, at) VALUES " + ", ".join(["(?, ?, ?)"] * len(writes.events)),
                        tuple(x for k, t, p in writes.events for x in (k, p, _iso(t)))))
        if writes.funnel:  # before the statuses: an appeal's status steps follow its confirmed step
            sts.append(self._funnel_sql(writes.funnel))
        sts += [self._unmatched_sql(text, t) for text, t in writes.unmatched]
        sts += [self._not_understood_sql(text, state, awaiting, t)
                for text, state, awaiting, t in writes.not_understood]
        for row in writes.appeals:
            sts.append(("INSERT INTO appeals (appeal_id, sender, route, prompt_id, status, masked_identity, "
                        "created_at, account) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appeal_id) DO UPDATE "
                        "SET sender = excluded.sender, route = excluded.route, prompt_id = excluded.prompt_id, "
                        "status = excluded.status, masked_identity = excluded.masked_identity, "
                        "created_at = excluded.created_at, account = excluded.account", (*row, self.account)))
        for appeal_id, status, t, by, note, msg_id in writes.statuses:
            sts += self._status_sql(appeal_id, status, t, by, note, msg_id)
            sts += self._funnel_status_sql(appeal_id, status, t)
        for key, value in writes.meta:
            sts.append(("DELETE FROM meta WHERE key = ?", (key,)) if value is None else (
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value)))
        for appeal_id, next_at, attempts, error in writes.sends:
            if next_at is None:
                sts.append(("DELETE FROM sends WHERE appeal_id = ?", (appeal_id,)))
            else:
                sts.append(("INSERT INTO sends (appeal_id, attempts, next_at, last_error) VALUES (?, ?, ?, ?) "
                            "ON CONFLICT (appeal_id) DO UPDATE SET attempts = excluded.attempts, "
                            "next_at = excluded.next_at, last_error = excluded.last_error",
                            (appeal_id, attempts, _iso(next_at), error)))
        sts += [self._transcript_sql(row) for row in writes.transcripts]
        for appeal_id, kind, t, msg_id, subject, body, suggested, in_reply_to in writes.threads:
            sts.append(("INSERT INTO appeal_thread (appeal_id, kind, message_id, in_reply_to, subject, at, body, "
                        "suggested) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (appeal_id, kind, msg_id, in_reply_to, subject, _iso(t),
                         None if body is None else self._vault.encrypt(body.encode()), suggested)))
        for mailbox, uidvalidity, last_uid in writes.imap_positions:
            sts.append(("INSERT INTO imap_state (mailbox, uidvalidity, last_uid) VALUES (?, ?, ?) "
                        "ON CONFLICT (mailbox) DO UPDATE SET uidvalidity = excluded.uidvalidity, "
                        "last_uid = excluded.last_uid", (mailbox, uidvalidity, last_uid)))
        outbox_at = None
        if replies:  # one statement; ids are given in the order of the rows
            outbox_at = len(sts)
            sts.append(("INSERT INTO outbox (reply_to, chat, account, payload, created_at) VALUES "
                        + ", ".join(["(?, ?, ?, ?, ?)"] * len(replies)) + " RETURNING id",
                        tuple(x for r, blob in zip(replies, blobs)
                              for x in (r.reply_to, r.chat, r.account if r.account is not None else self.account,
                                        blob, _iso(at)))))
        with self.transaction():
            results = self._batch(sts, returning=outbox_at)
            if message_id is not None and not results[processed_at]:
                raise AlreadyProcessed(message_id)
        if outbox_at is not None:
            for r, (oid,) in zip(replies, sorted(results[outbox_at])):
                r.outbox_id = oid
        metrics.committed(writes, len(replies))  # match tiers, statuses, replies: what was written

    # -- the SQL of a turn's writes (also used on their own by the queries) -----------------
    @staticmethod
    def _status_sql(appeal_id: str, status: str, at: datetime, by: str, note: str | None,
                    message_id: str | None) -> list[tuple[str, tuple]]:
        sets, args = ["status = ?", "status_at = ?", "note = ?"], [status, _iso(at), note]
        if message_id:
            sets += ["message_id = ?", "sent_at = ?"]
            args += [message_id, _iso(at)]
        return [(f"UPDATE appeals SET {', '.join(sets)} WHERE appeal_id = ?", (*args, appeal_id)),
                ('INSERT INTO appeal_history (appeal_id, status, at, "by", note) VALUES (?, ?, ?, ?, ?)',
                 (appeal_id, status, _iso(at), by, note))]

    @staticmethod
    def _delete_user_sql(sender: str) -> list[tuple[str, tuple]]:
        return [("DELETE FROM conversations WHERE sender = ?", (sender,)),
                *((f"DELETE FROM {table} WHERE appeal_id IN (SELECT appeal_id FROM appeals WHERE sender = ?)",
                   (sender,)) for table in ("appeal_history", "sends", "appeal_thread")),
                ("DELETE FROM appeals WHERE sender = ?", (sender,)),
                ("DELETE FROM transcripts WHERE sender = ?", (sender,))]

    @staticmethod
    def _unmatched_sql(text: str, at: datetime) -> tuple[str, tuple]:
        return ("INSERT INTO unmatched (text, count, last_at) VALUES (?, 1, ?) ON CONFLICT (text) "
                "DO UPDATE SET count = unmatched.count + 1, last_at = excluded.last_at", (text, _iso(at)))

    @staticmethod
    def _not_understood_sql(text: str, state: str, awaiting: str, at: datetime) -> tuple[str, tuple]:
        return ("INSERT INTO unmatched_waiting (text, state, awaiting, count, last_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT (text, state, awaiting) DO UPDATE SET count = unmatched_waiting.count + 1, "
                "last_at = excluded.last_at", (text, state, awaiting or "", _iso(at)))

    # -- the outbox ------------------------------------------------------------------------
    def unsent(self, limit: int = 500) -> list[Outgoing]:
        """Committed replies of this account not yet marked sent, oldest first, each claimed by
        this process. A claim is held for `OUTBOX_LEASE` and renewed by every call (a process
        polls more often than that): while this process lives no other sends the row; when it
        died, another process of the account takes the row over once the lease ran out. Rows
        without an account go to whichever account claims them first."""
        me, now = self.instance, datetime.now(timezone.utc)
        until = _iso(now + self.OUTBOX_LEASE)
        rows = self._query(
            "UPDATE outbox SET claimed_by = ?, claim_until = ? WHERE id IN (SELECT id FROM outbox "
            "WHERE sent_at IS NULL AND (account IN (?, '') OR claimed_by = ?) "
            "AND (claimed_by IS NULL OR claimed_by = ? OR claim_until IS NULL OR claim_until < ?) "
            f"ORDER BY id LIMIT ?{self.SKIP_LOCKED}) RETURNING id, reply_to, payload",
            (me, until, self.account, me, me, _iso(now), limit))
        out = []
        for oid, reply_to, blob in sorted(rows):
            p = json.loads(self._vault.decrypt(blob))
            out.append(Outgoing(chat=p["chat"], to=p["to"], text=p["text"], mention=p.get("mention", False),
                                prompt_id=p.get("prompt_id"), state=p.get("state"), awaiting=p.get("awaiting"),
                                appeal_id=p.get("appeal_id"), reply_to=reply_to, outbox_id=oid))
        return out

    def still_claimed(self, outbox_id: int) -> bool:
        """Right before sending: this process still holds the row's claim (renewed) and it is
        unsent. False when another process took it over meanwhile: then do not send it."""
        until = _iso(datetime.now(timezone.utc) + self.OUTBOX_LEASE)
        return self._exec("UPDATE outbox SET claim_until = ? WHERE id = ? AND claimed_by = ? AND sent_at IS NULL",
                          (until, outbox_id, self.instance)) == 1

    def mark_sent(self, outbox_ids: list[int], at: datetime | None = None) -> None:
        at = at or datetime.now(timezone.utc)
        for i in outbox_ids:
            if i is not None:
                self._exec("UPDATE outbox SET sent_at = ? WHERE id = ? AND sent_at IS NULL", (_iso(at), i))

    def prune_outbox(self, before: datetime) -> None:
        self._exec("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (_iso(before),))

    # -- the encryption key ---------------------------------------------------------------
    def check_key(self) -> None:
        """Refuse a key that is not the one the data was written with (KeyMismatch)."""
        rows = self._query("SELECT value FROM meta WHERE key = 'key_check'")
        if not rows:
            self._exec("INSERT INTO meta (key, value) VALUES ('key_check', ?) ON CONFLICT DO NOTHING",
                       (self._vault.encrypt(KEY_CHECK),))
            rows = self._query("SELECT value FROM meta WHERE key = 'key_check'")
        try:
            ok = self._vault.decrypt(bytes(rows[0][0])) == KEY_CHECK
        except VaultError:
            ok = False
        if not ok:
            raise KeyMismatch()

    # -- the knowledge version every process follows -----------------------------------------
    def kb_generation(self) -> str:
        """Changes whenever some process reloaded its knowledge base; '' before the first."""
        rows = self._query("SELECT value FROM meta WHERE key = 'kb_generation'")
        return bytes(rows[0][0]).decode() if rows else ""

    def meta_value(self, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return bytes(rows[0][0]) if rows else None

    def bump_kb_generation(self) -> str:
        token = secrets.token_hex(8)
        self._exec("INSERT INTO meta (key, value) VALUES ('kb_generation', ?) ON CONFLICT (key) DO UPDATE "
                   "SET value = excluded.value", (token.encode(),))
        return token

    def file_references(self) -> tuple[set[str], set[str]]:
        """Working files and appeal ids that some conversation still references (for the janitor)."""
        files, appeal_ids = set(), set()
        for chat, sender in self._query("SELECT chat, sender FROM conversations"):
            try:
                data = self.load(chat, sender).data
            except VaultError:
                continue
            for value in (data.get("slots") or {}).values():
                if isinstance(value, dict) and value.get("file"):
                    files.add(value["file"])
            for pending in [data.get("pending_file") or {}, *(data.get("queued_files") or [])]:
                if pending.get("ref", {}).get("file"):
                    files.add(pending["ref"]["file"])
            if data.get("appeal_id"):
                appeal_ids.add(data["appeal_id"])
        return files, appeal_ids

    # -- dedupe -----------------------------------------------------------------------
    def is_processed(self, message_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM processed WHERE message_id = ?", (message_id,)))

    def prune_processed(self, before: datetime) -> None:
        self._exec("DELETE FROM processed WHERE at < ?", (_iso(before),))

    # -- conversations ----------------------------------------------------------------
    CONVERSATION_COLUMNS = "state, data, last_activity, reminded, account"

    def load(self, chat: str, sender: str) -> Conversation:
        rows = self._query(f"SELECT {self.CONVERSATION_COLUMNS} FROM conversations WHERE chat = ? AND sender = ?",
                           (chat, sender))
        return self._conversation(chat, sender, rows[0] if rows else None)

    def _conversation(self, chat: str, sender: str, row) -> Conversation:
        if row is None:
            return Conversation(chat, sender)
        state, blob, last, reminded, account = row
        data = json.loads(self._vault.decrypt(bytes(blob)))
        return Conversation(chat, sender, state, data, _parse(last), bool(reminded), account or "")

    def save(self, conv: Conversation) -> None:
        self._exec(*self._save_sql(conv))

    def _save_sql(self, conv: Conversation) -> tuple[str, tuple]:
        if conv.state == "idle" and not conv.data:
            return ("DELETE FROM conversations WHERE chat = ? AND sender = ?", (conv.chat, conv.sender))
        blob = self._vault.encrypt(json.dumps(conv.data, ensure_ascii=False).encode())
        return ("INSERT INTO conversations (chat, sender, state, data, last_activity, reminded, account) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (chat, sender) DO UPDATE SET "
                "state = excluded.state, data = excluded.data, last_activity = excluded.last_activity, "
                "reminded = excluded.reminded, account = excluded.account",
                (conv.chat, conv.sender, conv.state, blob,
                 _iso(conv.last_activity or datetime.now(timezone.utc)), int(conv.reminded),
                 conv.account or self.account))

    def conversations_of(self, sender: str) -> list[Conversation]:
        rows = self._query("SELECT chat FROM conversations WHERE sender = ?", (sender,))
        return [self.load(chat, sender) for (chat,) in rows]

    def idle_conversations(self, idle_since: datetime) -> list[Conversation]:
        """Active (non-idle) conversations whose last activity is before `idle_since`."""
        rows = self._query("SELECT chat, sender FROM conversations WHERE state != 'idle' "
                           "AND last_activity <= ?", (_iso(idle_since),))
        return [self.load(c, s) for c, s in rows]
