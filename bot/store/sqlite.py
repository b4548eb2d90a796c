"""SQLite state that survives restarts: conversations, processed message ids, appeals, stats,
and the outbox of replies to send.

Conversation data (collected slots, which may hold an ID number) and outbox payloads are stored
encrypted with the vault; the other tables hold no personal data (masked identities, normalised
unmatched texts).

One message is one transaction (`commit_turn`): the conversation, the processed id, the counters
and the replies are committed together or not at all. Transports send from the outbox and mark
each reply sent afterwards, so a crash either leaves nothing of a turn (the redelivered message is
handled as new) or all of it (the redelivery is a duplicate and its replies are still unsent).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bot.appeals.crypto import Vault, VaultError
from bot.messages import Outgoing

# Versioned schema. Each version is applied once, in order, inside one BEGIN IMMEDIATE transaction
# (SQLite's write lock: two processes starting at once take turns; the second finds it done).
# A step is SQL, or ("add_column", table, column, declaration), which is skipped when the column is
# already there (databases from before versioning).
SCHEMA_VERSIONS: list[tuple[int, str, list]] = [
    (1, "conversations, dedupe, appeals, stats, rooms", [
        """CREATE TABLE IF NOT EXISTS conversations (
            chat TEXT NOT NULL, sender TEXT NOT NULL, state TEXT NOT NULL,
            data BLOB NOT NULL, last_activity TEXT NOT NULL, reminded INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (chat, sender))""",
        "CREATE TABLE IF NOT EXISTS processed (message_id TEXT PRIMARY KEY, at TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS appeals (
            appeal_id TEXT PRIMARY KEY, sender TEXT NOT NULL, route TEXT NOT NULL, prompt_id INTEGER,
            status TEXT NOT NULL, masked_identity TEXT NOT NULL, created_at TEXT NOT NULL)""",
        "CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL, prompt_id INTEGER, at TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS events_at ON events (at)",
        "CREATE TABLE IF NOT EXISTS unmatched (text TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS rooms (room TEXT PRIMARY KEY, mode TEXT NOT NULL)",
    ]),
    (2, "durable outbox, key check", [
        """CREATE TABLE IF NOT EXISTS outbox (
            id INTEGER PRIMARY KEY AUTOINCREMENT, reply_to TEXT, chat TEXT NOT NULL,
            payload BLOB NOT NULL, created_at TEXT NOT NULL, sent_at TEXT)""",
        "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, id)",
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    ]),
    (3, "appeal statuses, history, send queue, retention", [
        ("add_column", "appeals", "status_at", "TEXT"),
        ("add_column", "appeals", "message_id", "TEXT"),
        ("add_column", "appeals", "sent_at", "TEXT"),
        ("add_column", "appeals", "note", "TEXT"),
        ("add_column", "appeals", "package_deleted", "INTEGER NOT NULL DEFAULT 0"),
        """CREATE TABLE IF NOT EXISTS appeal_history (
            appeal_id TEXT NOT NULL, status TEXT NOT NULL, at TEXT NOT NULL, by TEXT NOT NULL, note TEXT)""",
        "CREATE INDEX IF NOT EXISTS appeal_history_id ON appeal_history (appeal_id, at)",
        """CREATE TABLE IF NOT EXISTS sends (
            appeal_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL,
            last_error TEXT)""",
    ]),
    (4, "web console operators and audit log", [
        """CREATE TABLE IF NOT EXISTS web_users (
            name TEXT PRIMARY KEY, hash TEXT NOT NULL, created_at TEXT NOT NULL,
            failed INTEGER NOT NULL DEFAULT 0, locked_until TEXT)""",
        """CREATE TABLE IF NOT EXISTS audit (
            at TEXT NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, target TEXT, source TEXT)""",
        "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
    ]),
]
SCHEMA_VERSION = SCHEMA_VERSIONS[-1][0]
# Appeal statuses: set by the bot, then by operators.
BOT_STATUSES = ("ready", "queued", "sent", "failed")
OPERATOR_STATUSES = ("reviewing", "resolved", "rejected", "need_more")
KEY_CHECK = b"dayu-bot key check v1"


class KeyMismatch(Exception):
    """The data dir was written with another encryption key."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s)


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.chat, self.sender)


@dataclass
class Writes:
    """What one turn writes besides the conversation: collected by the dialog, committed by
    `Store.commit_turn` in the turn's transaction. `after_commit` holds files to delete once the
    state that no longer references them is committed (a crash before leaves them to the janitor)."""
    events: list[tuple[str, datetime, int | None]] = field(default_factory=list)
    unmatched: list[tuple[str, datetime]] = field(default_factory=list)
    appeals: list[tuple] = field(default_factory=list)
    statuses: list[tuple] = field(default_factory=list)  # (appeal_id, status, at, by, note, message_id)
    sends: list[tuple] = field(default_factory=list)  # (appeal_id, next_at, attempts, error) or (appeal_id, None, ...)
    deleted_users: list[str] = field(default_factory=list)
    after_commit: list[Path] = field(default_factory=list)

    def record(self, kind: str, at: datetime, prompt_id: int | None = None) -> None:
        self.events.append((kind, at, prompt_id))

    def record_unmatched(self, text: str, at: datetime) -> None:
        self.unmatched.append((text, at))

    def add_appeal(self, appeal_id: str, sender: str, route: str, prompt_id: int | None,
                   masked_identity: str, at: datetime, status: str = "ready") -> None:
        self.appeals.append((appeal_id, sender, route, prompt_id, status, masked_identity, _iso(at)))
        self.set_status(appeal_id, status, at, "bot")

    def set_status(self, appeal_id: str, status: str, at: datetime, by: str, note: str | None = None,
                   message_id: str | None = None) -> None:
        self.statuses.append((appeal_id, status, at, by, note, message_id))

    def queue_send(self, appeal_id: str, next_at: datetime, attempts: int = 0, error: str | None = None) -> None:
        self.sends.append((appeal_id, next_at, attempts, error))

    def drop_send(self, appeal_id: str) -> None:
        self.sends.append((appeal_id, None, 0, None))

    def delete_user(self, sender: str) -> None:
        self.deleted_users.append(sender)

    def delete_file_later(self, path: Path) -> None:
        self.after_commit.append(path)

    def run_after_commit(self) -> None:
        for path in self.after_commit:
            path.unlink(missing_ok=True)
        self.after_commit.clear()


class Store:
    def __init__(self, path: Path, vault: Vault):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        self._vault = vault
        # One connection shared by the loop and worker threads; re-entrant so that a transaction
        # can call the helpers below. A transaction never awaits: it runs start to end under it.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self.migrations_applied = self.migrate()

    def schema_version(self) -> int:
        self._exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
        return self._query("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0][0]

    def migrate(self) -> list[int]:
        """Apply the schema versions this database lacks (at every start); returns those applied."""
        applied = []
        with self.transaction():  # BEGIN IMMEDIATE: one process at a time
            self._db.execute("CREATE TABLE IF NOT EXISTS schema_version "
                             "(version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
            current = self._db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            for version, _, steps in SCHEMA_VERSIONS:
                if version <= current:
                    continue
                for step in steps:
                    if isinstance(step, tuple):
                        _, table, column, decl = step
                        have = {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}
                        if column not in have:
                            self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
                    else:
                        self._db.execute(step)
                self._db.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                                 (version, _iso(datetime.now(timezone.utc))))
                applied.append(version)
        return applied

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- one turn, one transaction ------------------------------------------------------
    def commit_turn(self, conv: Conversation | None, message_id: str | None, at: datetime,
                    writes: Writes, replies: list[Outgoing]) -> None:
        """Commit a turn whole: conversation, processed id, counters, appeals, outbox rows.

        Sets `outbox_id` on each reply. Raises (and commits nothing) on any error."""
        blobs = [self._vault.encrypt(json.dumps(_payload(r), ensure_ascii=False).encode()) for r in replies]
        with self.transaction():
            for sender in writes.deleted_users:
                self.delete_user(sender)
            if conv is not None:
                self.save(conv)
            if message_id is not None:
                self._db.execute("INSERT OR IGNORE INTO processed (message_id, at) VALUES (?, ?)",
                                 (message_id, _iso(at)))
            self._db.executemany("INSERT INTO events (kind, prompt_id, at) VALUES (?, ?, ?)",
                                 [(k, p, _iso(t)) for k, t, p in writes.events])
            for text, t in writes.unmatched:
                self.record_unmatched(text, t)
            self._db.executemany("INSERT OR REPLACE INTO appeals (appeal_id, sender, route, prompt_id, status, "
                                 "masked_identity, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", writes.appeals)
            for appeal_id, status, t, by, note, message_id in writes.statuses:
                self._set_status(appeal_id, status, t, by, note, message_id)
            for appeal_id, next_at, attempts, error in writes.sends:
                if next_at is None:
                    self._db.execute("DELETE FROM sends WHERE appeal_id = ?", (appeal_id,))
                else:
                    self._db.execute("INSERT INTO sends (appeal_id, attempts, next_at, last_error) VALUES (?, ?, ?, ?) "
                                     "ON CONFLICT (appeal_id) DO UPDATE SET attempts = excluded.attempts, "
                                     "next_at = excluded.next_at, last_error = excluded.last_error",
                                     (appeal_id, attempts, _iso(next_at), error))
            for r, blob in zip(replies, blobs):
                cur = self._db.execute("INSERT INTO outbox (reply_to, chat, payload, created_at) VALUES (?, ?, ?, ?)",
                                       (r.reply_to, r.chat, blob, _iso(at)))
                r.outbox_id = cur.lastrowid

    def unsent(self, limit: int = 500) -> list[Outgoing]:
        """Committed replies not yet marked sent, oldest first."""
        rows = self._query("SELECT id, reply_to, payload FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT ?",
                           (limit,))
        out = []
        for oid, reply_to, blob in rows:
            p = json.loads(self._vault.decrypt(blob))
            out.append(Outgoing(chat=p["chat"], to=p["to"], text=p["text"], mention=p.get("mention", False),
                                prompt_id=p.get("prompt_id"), state=p.get("state"), awaiting=p.get("awaiting"),
                                appeal_id=p.get("appeal_id"), reply_to=reply_to, outbox_id=oid))
        return out

    def mark_sent(self, outbox_ids: list[int], at: datetime | None = None) -> None:
        at = at or datetime.now(timezone.utc)
        with self._lock:
            self._db.executemany("UPDATE outbox SET sent_at = ? WHERE id = ?",
                                 [(_iso(at), i) for i in outbox_ids if i is not None])

    def prune_outbox(self, before: datetime) -> None:
        self._exec("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (_iso(before),))

    # -- appeal statuses and the send queue ------------------------------------------------
    def _set_status(self, appeal_id: str, status: str, at: datetime, by: str, note: str | None,
                    message_id: str | None) -> None:
        sets, args = ["status = ?", "status_at = ?", "note = ?"], [status, _iso(at), note]
        if message_id:
            sets += ["message_id = ?", "sent_at = ?"]
            args += [message_id, _iso(at)]
        self._db.execute(f"UPDATE appeals SET {', '.join(sets)} WHERE appeal_id = ?", (*args, appeal_id))
        self._db.execute("INSERT INTO appeal_history (appeal_id, status, at, by, note) VALUES (?, ?, ?, ?, ?)",
                         (appeal_id, status, _iso(at), by, note))

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
        rows = self._query("SELECT status, at, by, note FROM appeal_history WHERE appeal_id = ? ORDER BY at, rowid",
                           (appeal_id,))
        return [dict(zip(("status", "at", "by", "note"), r)) for r in rows]

    def due_sends(self, now: datetime) -> list[tuple[str, int]]:
        return self._query("SELECT appeal_id, attempts FROM sends WHERE next_at <= ? ORDER BY next_at",
                           (_iso(now),))

    def pending_sends(self) -> int:
        return self._query("SELECT COUNT(*) FROM sends")[0][0]

    def appeals_to_expire(self, before: datetime) -> list[str]:
        """Packages whose appeal ended (resolved/rejected) before `before` and still exist."""
        return [r[0] for r in self._query(
            "SELECT appeal_id FROM appeals WHERE status IN ('resolved', 'rejected') AND status_at < ? "
            "AND package_deleted = 0", (_iso(before),))]

    def mark_package_deleted(self, appeal_id: str, at: datetime) -> None:
        with self.transaction():
            self._db.execute("UPDATE appeals SET package_deleted = 1 WHERE appeal_id = ?", (appeal_id,))
            self._db.execute("INSERT INTO appeal_history (appeal_id, status, at, by, note) VALUES (?, ?, ?, ?, ?)",
                             (appeal_id, "package_deleted", _iso(at), "bot", None))

    # -- the encryption key ---------------------------------------------------------------
    def check_key(self) -> None:
        """Refuse a key that is not the one the data dir was written with (KeyMismatch)."""
        rows = self._query("SELECT value FROM meta WHERE key = 'key_check'")
        if not rows:
            self._exec("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_check', ?)",
                       (self._vault.encrypt(KEY_CHECK),))
            return
        try:
            ok = self._vault.decrypt(rows[0][0]) == KEY_CHECK
        except VaultError:
            ok = False
        if not ok:
            raise KeyMismatch()

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
            pending = data.get("pending_file") or {}
            if pending.get("ref", {}).get("file"):
                files.add(pending["ref"]["file"])
            if data.get("appeal_id"):
                appeal_ids.add(data["appeal_id"])
        return files, appeal_ids

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- dedupe -----------------------------------------------------------------------
    def is_processed(self, message_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM processed WHERE message_id = ?", (message_id,)))

    def prune_processed(self, before: datetime) -> None:
        self._exec("DELETE FROM processed WHERE at < ?", (_iso(before),))

    # -- conversations ----------------------------------------------------------------
    def load(self, chat: str, sender: str) -> Conversation:
        rows = self._query("SELECT state, data, last_activity, reminded FROM conversations "
                           "WHERE chat = ? AND sender = ?", (chat, sender))
        if not rows:
            return Conversation(chat, sender)
        state, blob, last, reminded = rows[0]
        data = json.loads(self._vault.decrypt(blob))
        return Conversation(chat, sender, state, data, _parse(last), bool(reminded))

    def save(self, conv: Conversation) -> None:
        if conv.state == "idle" and not conv.data:
            self.delete_conversation(conv.chat, conv.sender)
            return
        blob = self._vault.encrypt(json.dumps(conv.data, ensure_ascii=False).encode())
        self._exec("INSERT INTO conversations (chat, sender, state, data, last_activity, reminded) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (chat, sender) DO UPDATE SET "
                   "state = excluded.state, data = excluded.data, "
                   "last_activity = excluded.last_activity, reminded = excluded.reminded",
                   (conv.chat, conv.sender, conv.state, blob,
                    _iso(conv.last_activity or datetime.now(timezone.utc)), int(conv.reminded)))

    def delete_conversation(self, chat: str, sender: str) -> None:
        self._exec("DELETE FROM conversations WHERE chat = ? AND sender = ?", (chat, sender))

    def conversations_of(self, sender: str) -> list[Conversation]:
        rows = self._query("SELECT chat FROM conversations WHERE sender = ?", (sender,))
        return [self.load(chat, sender) for (chat,) in rows]

    def idle_conversations(self, idle_since: datetime) -> list[Conversation]:
        """Active (non-idle) conversations whose last activity is before `idle_since`."""
        rows = self._query("SELECT chat, sender FROM conversations WHERE state != 'idle' "
                           "AND last_activity <= ?", (_iso(idle_since),))
        return [self.load(c, s) for c, s in rows]

    # -- appeals ----------------------------------------------------------------------
    def appeals(self, limit: int = 20, status: str | None = None, sender: str | None = None,
                appeal_id: str | None = None, offset: int = 0) -> list[dict]:
        """Appeals, newest first (no personal data: the identity is masked)."""
        where, args = [], []
        for column, value in (("status", status), ("sender", sender), ("appeal_id", appeal_id)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        keys = ("appeal_id", "sender", "route", "prompt_id", "status", "masked_identity", "created_at",
                "status_at", "message_id", "sent_at", "note", "package_deleted")
        rows = self._query(f"SELECT {', '.join(keys)} FROM appeals"
                           + (f" WHERE {' AND '.join(where)}" if where else "")
                           + " ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [dict(zip(keys, r)) for r in rows]


    def delete_user(self, sender: str) -> None:
        self._exec("DELETE FROM conversations WHERE sender = ?", (sender,))
        for table in ("appeal_history", "sends"):
            self._exec(f"DELETE FROM {table} WHERE appeal_id IN (SELECT appeal_id FROM appeals WHERE sender = ?)",
                       (sender,))
        self._exec("DELETE FROM appeals WHERE sender = ?", (sender,))

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
        self._exec("INSERT INTO unmatched (text, count, last_at) VALUES (?, 1, ?) ON CONFLICT (text) "
                   "DO UPDATE SET count = count + 1, last_at = excluded.last_at", (text, _iso(at)))

    def top_unmatched(self, since: datetime, limit: int = 10) -> list[tuple[str, int]]:
        return self._query("SELECT text, count FROM unmatched WHERE last_at >= ? "
                           "ORDER BY count DESC, last_at DESC LIMIT ?", (_iso(since), limit))

    def dismiss_unmatched(self, text: str) -> None:
        self._exec("DELETE FROM unmatched WHERE text = ?", (text,))

    def messages_per_day(self, since: datetime) -> list[tuple[str, int]]:
        return self._query("SELECT substr(at, 1, 10) AS day, COUNT(*) FROM events WHERE kind = 'message' "
                           "AND at >= ? GROUP BY day ORDER BY day", (_iso(since),))

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
        return self._exec("DELETE FROM web_users WHERE name = ?", (name,)).rowcount == 1

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
        rows = self._query("SELECT at, who, action, target, source FROM audit ORDER BY at DESC, rowid DESC "
                           "LIMIT ? OFFSET ?", (limit, offset))
        return [dict(zip(("at", "who", "action", "target", "source"), r)) for r in rows]

    # -- rooms ---------------------------------------------------------------
    def room_mode(self, room: str) -> str | None:
        rows = self._query("SELECT mode FROM rooms WHERE room = ?", (room,))
        return rows[0][0] if rows else None

    def set_room_mode(self, room: str, mode: str) -> None:
        self._exec("INSERT INTO rooms (room, mode) VALUES (?, ?) ON CONFLICT (room) DO UPDATE SET "
                   "mode = excluded.mode", (room, mode))
