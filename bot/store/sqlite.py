"""SQLite state that survives restarts: conversations, processed message ids, appeals, stats.

Conversation data (collected slots, which may hold an ID number) is stored encrypted with the
vault; the other tables hold no personal data (masked identities, normalised unmatched texts).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from bot.appeals.crypto import Vault

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    chat TEXT NOT NULL, sender TEXT NOT NULL, state TEXT NOT NULL,
    data BLOB NOT NULL, last_activity TEXT NOT NULL, reminded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (chat, sender));
CREATE TABLE IF NOT EXISTS processed (message_id TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appeals (
    appeal_id TEXT PRIMARY KEY, sender TEXT NOT NULL, route TEXT NOT NULL, prompt_id INTEGER,
    status TEXT NOT NULL, masked_identity TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (kind TEXT NOT NULL, prompt_id INTEGER, at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS unmatched (text TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (room TEXT PRIMARY KEY, mode TEXT NOT NULL);
"""


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat()


def _parse(s: str) -> datetime:
    return datetime.fromisoformat(s)


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


class Store:
    def __init__(self, path: Path, vault: Vault):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        self._vault = vault
        self._lock = threading.Lock()  # one connection shared by the loop and worker threads
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _exec(self, sql: str, args=()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- dedupe -----------------------------------------------------------------------
    def mark_processed(self, message_id: str, at: datetime) -> bool:
        """Record a message id; False when it was already handled (a redelivery)."""
        cur = self._exec("INSERT OR IGNORE INTO processed (message_id, at) VALUES (?, ?)",
                         (message_id, _iso(at)))
        return cur.rowcount == 1

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
    def add_appeal(self, appeal_id: str, sender: str, route: str, prompt_id: int | None,
                   masked_identity: str, at: datetime, status: str = "submitted") -> None:
        self._exec("INSERT INTO appeals VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (appeal_id, sender, route, prompt_id, status, masked_identity, _iso(at)))

    def appeals(self, limit: int = 20) -> list[dict]:
        rows = self._query("SELECT appeal_id, sender, route, prompt_id, status, masked_identity, created_at "
                           "FROM appeals ORDER BY created_at DESC LIMIT ?", (limit,))
        keys = ("appeal_id", "sender", "route", "prompt_id", "status", "masked_identity", "created_at")
        return [dict(zip(keys, r)) for r in rows]


    def delete_user(self, sender: str) -> None:
        self._exec("DELETE FROM conversations WHERE sender = ?", (sender,))
        self._exec("DELETE FROM appeals WHERE sender = ?", (sender,))

    # -- stats ------------------------------------------------------------------------
    def record(self, kind: str, at: datetime, prompt_id: int | None = None) -> None:
        self._exec("INSERT INTO events (kind, prompt_id, at) VALUES (?, ?, ?)", (kind, prompt_id, _iso(at)))

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

    # -- rooms ---------------------------------------------------------------
    def room_mode(self, room: str) -> str | None:
        rows = self._query("SELECT mode FROM rooms WHERE room = ?", (room,))
        return rows[0][0] if rows else None

    def set_room_mode(self, room: str, mode: str) -> None:
        self._exec("INSERT INTO rooms (room, mode) VALUES (?, ?) ON CONFLICT (room) DO UPDATE SET "
                   "mode = excluded.mode", (room, mode))
