"""The embedded backend: one SQLite file in the data dir, files on disk beside it.

One process owns it (one WeChat account); the CLI and the web console may open it at the same
time (WAL, and BEGIN IMMEDIATE for every write transaction).
"""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from bot.store.base import SqlStore
from bot.store.files import DiskFiles
from bot.store.records import DEFAULT_ACCOUNT, _iso

# Versioned schema. Each version is applied once, in order, inside one BEGIN IMMEDIATE transaction
# (SQLite's write lock: two processes starting at once take turns; the second finds it done).
# A step is SQL, or ("add_column", table, column, declaration), which is skipped when the column is
# already there (databases from before versioning). bot/store/postgres.py has the same versions in
# PostgreSQL's words; a new version goes into both.
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
    (5, "several WeChat accounts: who a conversation, an appeal and a reply belong to", [
        ("add_column", "conversations", "account", "TEXT NOT NULL DEFAULT ''"),
        ("add_column", "appeals", "account", "TEXT NOT NULL DEFAULT ''"),
        ("add_column", "outbox", "account", "TEXT NOT NULL DEFAULT ''"),
        ("add_column", "outbox", "claimed_by", "TEXT"),
    ]),
    (6, "outbox claims held by one process, with a lease", [
        ("add_column", "outbox", "claim_until", "TEXT"),
    ]),
    (7, "messages not understood while the bot waited for an answer (redacted), for operators", [
        """CREATE TABLE IF NOT EXISTS unmatched_waiting (
            text TEXT NOT NULL, state TEXT NOT NULL, awaiting TEXT NOT NULL DEFAULT '', count INTEGER NOT NULL,
            last_at TEXT NOT NULL, PRIMARY KEY (text, state, awaiting))""",
    ]),
    (8, "an appeal's email thread (our emails, the platform's replies, encrypted), the IMAP position", [
        """CREATE TABLE IF NOT EXISTS appeal_thread (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, appeal_id TEXT NOT NULL, kind TEXT NOT NULL, message_id TEXT,
            in_reply_to TEXT, subject TEXT, at TEXT NOT NULL, body BLOB, suggested TEXT,
            UNIQUE (appeal_id, kind, message_id))""",
        "CREATE INDEX IF NOT EXISTS appeal_thread_message ON appeal_thread (message_id)",
        "CREATE INDEX IF NOT EXISTS appeal_thread_subject ON appeal_thread (subject)",
        # appeals emailed before: their sent email (the Message-ID; the subject is in the package only)
        """INSERT INTO appeal_thread (appeal_id, kind, message_id, at) SELECT appeal_id, 'sent', message_id, sent_at
            FROM appeals WHERE message_id IS NOT NULL AND sent_at IS NOT NULL""",
        """CREATE TABLE IF NOT EXISTS imap_state (
            mailbox TEXT PRIMARY KEY, uidvalidity INTEGER NOT NULL, last_uid INTEGER NOT NULL)""",
    ]),
    (9, "conversation transcripts for review (redacted, encrypted, kept transcript_days)", [
        """CREATE TABLE IF NOT EXISTS transcripts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, conv TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL,
            at TEXT NOT NULL, state_before TEXT NOT NULL, state_after TEXT NOT NULL, prompt_id INTEGER,
            misread TEXT NOT NULL DEFAULT '', label TEXT, labelled_by TEXT, payload BLOB NOT NULL,
            account TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX IF NOT EXISTS transcripts_conv ON transcripts (conv, seq)",
        "CREATE INDEX IF NOT EXISTS transcripts_at ON transcripts (at)",
        "CREATE INDEX IF NOT EXISTS transcripts_sender ON transcripts (sender)",
    ]),
    (10, "the appeal funnel: each attempt's steps, at most once each (no personal data)", [
        """CREATE TABLE IF NOT EXISTS funnel (
            attempt TEXT NOT NULL, step TEXT NOT NULL, slot TEXT NOT NULL DEFAULT '', prompt_id INTEGER,
            route TEXT, appeal_id TEXT, at TEXT NOT NULL, PRIMARY KEY (attempt, step, slot))""",
        "CREATE INDEX IF NOT EXISTS funnel_at ON funnel (at)",
        "CREATE INDEX IF NOT EXISTS funnel_appeal ON funnel (appeal_id)",
    ]),
]
SCHEMA_VERSION = SCHEMA_VERSIONS[-1][0]


class SqliteStore(SqlStore):
    kind = "sqlite"
    SEQ = "rowid"
    SKIP_LOCKED = ""

    def __init__(self, path: Path, vault, files: DiskFiles | None = None, account: str = DEFAULT_ACCOUNT,
                 outbox_lease_seconds: float | None = None):
        path = Path(path)
        super().__init__(vault, files or DiskFiles(path.parent), account, outbox_lease_seconds)
        # One bot process per data dir: the account names the process, so a restarted bot takes
        # up its predecessor's claimed replies at once instead of after the lease.
        self.instance = self.account
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        self.path = path
        # One connection shared by the loop and worker threads; re-entrant so that a transaction
        # can call the helpers. A transaction never awaits: it runs start to end under it.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._depth = 0
        self.migrations_applied = self.migrate()

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def ping(self) -> None:
        """Open the file afresh (never creating it) and read it: the open connection would go on
        working on a file deleted or moved away, whose data a restart would not find."""
        db = sqlite3.connect(f"{self.path.as_uri()}?mode=rw", uri=True, timeout=2)
        try:
            db.execute("SELECT COUNT(*) FROM schema_version").fetchone()
        finally:
            db.close()

    def _exec(self, sql: str, args=()) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    @contextmanager
    def transaction(self):
        with self._lock:
            if self._depth:  # nested: part of the enclosing transaction
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

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


Store = SqliteStore  # the embedded default; open_store() picks by database_url
