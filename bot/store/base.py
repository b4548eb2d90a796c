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
from collections.abc import Callable
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from bot.appeals.crypto import VaultError
from bot.dialog.validators import find_id_numbers
from bot.messages import Outgoing
from bot.privacy import redact

# Appeal statuses: set by the bot, then by operators.
# `replied`: the platform answered by email (bot/appeals/imap.py), before an operator decides.
BOT_STATUSES = ("ready", "queued", "sent", "replied", "failed")
OPERATOR_STATUSES = ("reviewing", "resolved", "rejected", "need_more")
KEY_CHECK = b"dayu-bot key check v1"
DEFAULT_ACCOUNT = "main"


class KeyMismatch(Exception):
    """The data was written with another encryption key."""


class AlreadyProcessed(Exception):
    """Another process committed this message id first: the turn is dropped whole."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s)


def operator_text(text: str | None) -> str:
    """A creator's message as operators may see it: whitespace collapsed, redacted (ID-number-like
    sequences, mobiles, paths masked), at most 120 characters; "" (record nothing) when it is empty
    or holds a (checksum-valid) ID number, before or after redaction."""
    collapsed = " ".join((text or "").split())
    if find_id_numbers(collapsed):
        return ""
    out = redact(collapsed)[:120]
    return "" if not out or find_id_numbers(out) else out


def _payload(r: Outgoing) -> dict:
    return {"chat": r.chat, "to": r.to, "text": r.text, "mention": r.mention, "prompt_id": r.prompt_id,
            "state": r.state, "awaiting": r.awaiting, "appeal_id": r.appeal_id}


@dataclass
class Conversation:
    chat: str
    sender: str
    state: str = "idle"
    data: dict = field(default_factory=dict)
    last_activity: datetime | None = None
    reminded: bool = False
    account: str = ""  # the WeChat account the creator last wrote to: reminders go out through it

    @property
    def key(self) -> tuple[str, str]:
        return (self.chat, self.sender)


@dataclass
class TurnHold:
    """What `SqlStore.turn` yields: whether this process holds the conversation, and, read once it
    does, whether the message id was already handled and the conversation as committed (decoded
    on first use: an admin command or a failed turn's answer never needs it, nor fails on it)."""
    held: bool
    processed: bool = False
    load: Callable[[], Conversation] | None = None
    _conversation: Conversation | None = None

    @property
    def conversation(self) -> Conversation:
        if self._conversation is None:
            self._conversation = self.load()
        return self._conversation

    def __bool__(self) -> bool:
        return self.held


@dataclass
class Writes:
    """What one turn writes besides the conversation: collected by the dialog, committed by
    `Store.commit_turn` in the turn's transaction. `after_commit` holds file keys to delete once
    the state that no longer references them is committed (a crash before leaves them to the janitor)."""
    events: list[tuple[str, datetime, int | None]] = field(default_factory=list)
    unmatched: list[tuple[str, datetime]] = field(default_factory=list)
    not_understood: list[tuple[str, str, str, datetime]] = field(default_factory=list)  # (text, state, awaiting, at)
    appeals: list[tuple] = field(default_factory=list)
    statuses: list[tuple] = field(default_factory=list)  # (appeal_id, status, at, by, note, message_id)
    sends: list[tuple] = field(default_factory=list)  # (appeal_id, next_at, attempts, error) or (appeal_id, None, ...)
    deleted_users: list[str] = field(default_factory=list)
    after_commit: list[str] = field(default_factory=list)
    # (appeal_id, kind, at, message_id, subject, body, suggested, in_reply_to): the appeal's email thread
    threads: list[tuple] = field(default_factory=list)
    imap_positions: list[tuple[str, int, int]] = field(default_factory=list)  # (mailbox, uidvalidity, last_uid)
    meta: list[tuple[str, bytes | None]] = field(default_factory=list)  # (key, value or None = delete)

    def record(self, kind: str, at: datetime, prompt_id: int | None = None) -> None:
        self.events.append((kind, at, prompt_id))

    def record_unmatched(self, text: str, at: datetime) -> None:
        self.unmatched.append((text, at))

    def record_not_understood(self, text: str, state: str, awaiting: str | None, at: datetime) -> None:
        """A message the bot did not understand while it waited for an answer in `state` (for
        `awaiting`: an item's slot or a question's name). Redacted here (`operator_text`); nothing
        is recorded when that leaves nothing or an ID number. In the idle state it is an idle
        unmatched message (the `unmatched` table)."""
        text = operator_text(text)
        if not text:
            return
        if not state or state == "idle":
            self.unmatched.append((text, at))
        else:
            self.not_understood.append((text, state, awaiting or "", at))

    def add_appeal(self, appeal_id: str, sender: str, route: str, prompt_id: int | None,
                   masked_identity: str, at: datetime, status: str = "ready") -> None:
        self.appeals.append((appeal_id, sender, route, prompt_id, status, masked_identity, _iso(at)))
        self.set_status(appeal_id, status, at, "bot")

    def set_status(self, appeal_id: str, status: str, at: datetime, by: str, note: str | None = None,
                   message_id: str | None = None) -> None:
        self.statuses.append((appeal_id, status, at, by, note, message_id))

    def queue_send(self, appeal_id: str, next_at: datetime, attempts: int = 0, error: str | None = None) -> None:
        self.sends.append((appeal_id, next_at, attempts, error))

    def set_meta(self, key: str, value: bytes | None) -> None:
        """A small named value in `meta`, written with the turn (None deletes it)."""
        self.meta.append((key, value))

    def drop_send(self, appeal_id: str) -> None:
        self.sends.append((appeal_id, None, 0, None))

    def delete_user(self, sender: str) -> None:
        self.deleted_users.append(sender)

    def add_thread(self, appeal_id: str, kind: str, at: datetime, message_id: str | None = None,
                   subject: str | None = None, body: str | None = None, suggested: str | None = None,
                   in_reply_to: str | None = None) -> None:
        """One email of the appeal's thread: `kind` is 'sent' (our email), 'supplement_sent' (our
        follow-up) or 'reply' (the platform's). `body` (the reply's text) is stored encrypted; a row
        already there (same appeal, kind and Message-ID) is left as it is: a reply seen twice is
        taken once."""
        self.threads.append((appeal_id, kind, at, message_id, subject, body, suggested, in_reply_to))

    def set_imap_position(self, mailbox: str, uidvalidity: int, last_uid: int) -> None:
        """The IMAP mailbox read up to `last_uid` under `uidvalidity`, committed with the turn."""
        self.imap_positions.append((mailbox, int(uidvalidity), int(last_uid)))

    def delete_file_later(self, key: str) -> None:
        self.after_commit.append(key)

    def run_after_commit(self, files) -> None:
        for key in self.after_commit:
            files.delete(key)
        self.after_commit.clear()


class SqlStore:
    """The store's interface and its SQL; see the module docstring."""

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

    # -- appeal statuses and the send queue ------------------------------------------------
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

    def change_status(self, appeal_id: str, status: str, at: datetime, by: str, note: str | None,
                      replies: list[Outgoing]) -> None:
        """An operator's status change and the creator's notification, committed together."""
        writes = Writes()
        writes.set_status(appeal_id, status, at, by, note)
        self.commit_turn(None, None, at, writes, replies)

    def appeal(self, appeal_id: str) -> dict | None:
        rows = self.appeals(appeal_id=appeal_id)
        return rows[0] if rows else None

    def appeal_history(self, appeal_id: str) -> list[dict]:
        rows = self._query(f'SELECT status, at, "by", note FROM appeal_history WHERE appeal_id = ? '
                           f"ORDER BY at, {self.SEQ}", (appeal_id,))
        return [dict(zip(("status", "at", "by", "note"), r)) for r in rows]

    # -- the appeal's email thread, and the IMAP position ------------------------------------
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

    # -- appeals ----------------------------------------------------------------------
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

    @staticmethod
    def _delete_user_sql(sender: str) -> list[tuple[str, tuple]]:
        return [("DELETE FROM conversations WHERE sender = ?", (sender,)),
                *((f"DELETE FROM {table} WHERE appeal_id IN (SELECT appeal_id FROM appeals WHERE sender = ?)",
                   (sender,)) for table in ("appeal_history", "sends", "appeal_thread")),
                ("DELETE FROM appeals WHERE sender = ?", (sender,))]

    # -- stats ------------------------------------------------------------------------
    def event_counts(self, since: datetime | None = None) -> dict[str, int]:
        sql, args = "SELECT kind, COUNT(*) FROM events", ()
        if since is not None:
            sql, args = sql + " WHERE at >= ?", (_iso(since),)
        return dict(self._query(sql + " GROUP BY kind", args))

    def match_counts(self, since: datetime | None = None) -> dict[int, int]:
        sql, args = "SELECT prompt_id, COUNT(*) FROM events WHERE kind = 'match'", ()
        if since is not None:
            sql, args = sql + " AND at >= ?", (_iso(since),)
        return dict(self._query(sql + " GROUP BY prompt_id ORDER BY prompt_id", args))

    def record_unmatched(self, text: str, at: datetime) -> None:
        self._exec(*self._unmatched_sql(text, at))

    @staticmethod
    def _unmatched_sql(text: str, at: datetime) -> tuple[str, tuple]:
        return ("INSERT INTO unmatched (text, count, last_at) VALUES (?, 1, ?) ON CONFLICT (text) "
                "DO UPDATE SET count = unmatched.count + 1, last_at = excluded.last_at", (text, _iso(at)))

    @staticmethod
    def _not_understood_sql(text: str, state: str, awaiting: str, at: datetime) -> tuple[str, tuple]:
        return ("INSERT INTO unmatched_waiting (text, state, awaiting, count, last_at) VALUES (?, ?, ?, 1, ?) "
                "ON CONFLICT (text, state, awaiting) DO UPDATE SET count = unmatched_waiting.count + 1, "
                "last_at = excluded.last_at", (text, state, awaiting or "", _iso(at)))

    def top_unmatched(self, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
        """Idle unmatched messages only, as (text, count), most frequent first."""
        return [tuple(r) for r in self._query("SELECT text, count FROM unmatched WHERE last_at >= ? "
                                              "ORDER BY count DESC, last_at DESC LIMIT ?", (_iso(since), limit))]

    UNMATCHED_KEYS = ("text", "count", "last_at", "kind", "state", "awaiting")

    def top_unmatched_all(self, since: datetime, limit: int = 10) -> list[dict]:
        """Both kinds, most frequent first, then most recent: dicts of UNMATCHED_KEYS; `kind` is
        "idle" (state "idle", awaiting "") or "waiting" (not understood while waiting for an answer)."""
        rows = self._query(
            "SELECT text, count, last_at, 'idle' AS kind, 'idle' AS state, '' AS awaiting FROM unmatched "
            "WHERE last_at >= ? UNION ALL "
            "SELECT text, count, last_at, 'waiting' AS kind, state, awaiting FROM unmatched_waiting "
            "WHERE last_at >= ? ORDER BY count DESC, last_at DESC, kind, state, awaiting, text LIMIT ?",
            (_iso(since), _iso(since), limit))
        return [dict(zip(self.UNMATCHED_KEYS, r)) for r in rows]

    def dismiss_unmatched(self, text: str, state: str | None = None, awaiting: str | None = None) -> None:
        """Remove an idle row (`state` None or "idle"), else the waiting row of (text, state, awaiting)."""
        if state is None or state == "idle":
            self._exec("DELETE FROM unmatched WHERE text = ?", (text,))
        else:
            self._exec("DELETE FROM unmatched_waiting WHERE text = ? AND state = ? AND awaiting = ?",
                       (text, state, awaiting or ""))

    def messages_per_day(self, since: datetime) -> list[tuple[str, int]]:
        return [tuple(r) for r in self._query(
            "SELECT substr(at, 1, 10) AS day, COUNT(*) FROM events WHERE kind = 'message' "
            "AND at >= ? GROUP BY day ORDER BY day", (_iso(since),))]

    def appeals_per_status(self) -> dict[str, int]:
        return dict(self._query("SELECT status, COUNT(*) FROM appeals GROUP BY status"))

    # -- operators of the web console, and the audit log (no personal data in either) -----
    def web_user(self, name: str) -> dict | None:
        rows = self._query("SELECT name, hash, failed, locked_until FROM web_users WHERE name = ?", (name,))
        return dict(zip(("name", "hash", "failed", "locked_until"), rows[0])) if rows else None

    def web_users(self) -> list[str]:
        return [r[0] for r in self._query("SELECT name FROM web_users ORDER BY name")]

    def set_web_user(self, name: str, password_hash: str, at: datetime) -> None:
        self._exec("INSERT INTO web_users (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
                   "SET hash = excluded.hash, failed = 0, locked_until = NULL", (name, password_hash, _iso(at)))

    def delete_web_user(self, name: str) -> bool:
        return self._exec("DELETE FROM web_users WHERE name = ?", (name,)) == 1

    def web_login_result(self, name: str, ok: bool, locked_until: datetime | None = None) -> None:
        if ok:
            self._exec("UPDATE web_users SET failed = 0, locked_until = NULL WHERE name = ?", (name,))
        else:
            self._exec("UPDATE web_users SET failed = failed + 1, locked_until = ? WHERE name = ?",
                       (_iso(locked_until) if locked_until else None, name))

    def audit(self, who: str, action: str, target: str | None, source: str | None, at: datetime | None = None) -> None:
        self._exec("INSERT INTO audit (at, who, action, target, source) VALUES (?, ?, ?, ?, ?)",
                   (_iso(at or datetime.now(timezone.utc)), who, action, target, source))

    def audit_log(self, limit: int = 200, offset: int = 0) -> list[dict]:
        rows = self._query(f"SELECT at, who, action, target, source FROM audit ORDER BY at DESC, {self.SEQ} DESC "
                           "LIMIT ? OFFSET ?", (limit, offset))
        return [dict(zip(("at", "who", "action", "target", "source"), r)) for r in rows]

    # -- rooms ---------------------------------------------------------------
    def room_mode(self, room: str) -> str | None:
        rows = self._query("SELECT mode FROM rooms WHERE room = ?", (room,))
        return rows[0][0] if rows else None

    def set_room_mode(self, room: str, mode: str) -> None:
        self._exec("INSERT INTO rooms (room, mode) VALUES (?, ?) ON CONFLICT (room) DO UPDATE SET "
                   "mode = excluded.mode", (room, mode))
