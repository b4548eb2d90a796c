"""The shared backend: PostgreSQL (psycopg 3 and its pool), for several bot processes, one per
WeChat account, on one database.

What keeps several processes correct:
- a turn runs in one transaction that first takes a transaction-scoped advisory lock keyed by
  the conversation (`turn`): one creator's turns never interleave, whichever process got them;
  the processed id is inserted in that transaction, so a message id is handled once;
- the outbox, the send queue and retention are claimed with `FOR UPDATE SKIP LOCKED`, reminders
  with a try-lock on the conversation, the janitor with a try-lock of its own (`exclusive`); an
  outbox row's claim names the process (not the account) and holds for a lease its process
  renews while it lives, so two processes of one account never send one reply;
- working files and packages are rows of `blobs`/`blob_chunks` (encrypted, in 1 MiB chunks), so
  any process sees them, and a file written in a turn commits or vanishes with the turn;
- migrations run under an advisory lock: two processes starting at once take turns.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from psycopg import sql as pgsql

from bot.store.base import SqlStore
from bot.store.files import safe_key
from bot.store.records import DEFAULT_ACCOUNT, TurnHold, _iso

# Advisory lock name spaces (the first int of pg_advisory_xact_lock(int, int)).
LOCK_MIGRATE, LOCK_TURN, LOCK_JOB = 0x0B07_0001, 0x0B07_0002, 0x0B07_0003

# The schema in PostgreSQL's words. A new database gets the whole of version 5 at once (the
# SQLite versions 1-4 predate this backend); later versions go into both lists.
SCHEMA_VERSIONS: list[tuple[int, str, list[str]]] = [
    (5, "the whole schema of version 5, blobs for files", [
        """CREATE TABLE conversations (
            chat TEXT NOT NULL, sender TEXT NOT NULL, state TEXT NOT NULL, data BYTEA NOT NULL,
            last_activity TEXT NOT NULL, reminded INTEGER NOT NULL DEFAULT 0, account TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (chat, sender))""",
        "CREATE INDEX conversations_idle ON conversations (last_activity) WHERE state <> 'idle'",
        "CREATE TABLE processed (message_id TEXT PRIMARY KEY, at TEXT NOT NULL)",
        "CREATE INDEX processed_at ON processed (at)",
        """CREATE TABLE appeals (
            seq BIGSERIAL, appeal_id TEXT PRIMARY KEY, sender TEXT NOT NULL, route TEXT NOT NULL,
            prompt_id INTEGER, status TEXT NOT NULL, masked_identity TEXT NOT NULL, created_at TEXT NOT NULL,
            status_at TEXT, message_id TEXT, sent_at TEXT, note TEXT, package_deleted INTEGER NOT NULL DEFAULT 0,
            account TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX appeals_sender ON appeals (sender)",
        "CREATE TABLE events (kind TEXT NOT NULL, prompt_id INTEGER, at TEXT NOT NULL)",
        "CREATE INDEX events_at ON events (at)",
        "CREATE TABLE unmatched (text TEXT PRIMARY KEY, count INTEGER NOT NULL, last_at TEXT NOT NULL)",
        "CREATE TABLE rooms (room TEXT PRIMARY KEY, mode TEXT NOT NULL)",
        """CREATE TABLE outbox (
            id BIGSERIAL PRIMARY KEY, reply_to TEXT, chat TEXT NOT NULL, payload BYTEA NOT NULL,
            created_at TEXT NOT NULL, sent_at TEXT, account TEXT NOT NULL DEFAULT '', claimed_by TEXT)""",
        "CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
        """CREATE TABLE appeal_history (
            seq BIGSERIAL, appeal_id TEXT NOT NULL, status TEXT NOT NULL, at TEXT NOT NULL, "by" TEXT NOT NULL,
            note TEXT)""",
        "CREATE INDEX appeal_history_id ON appeal_history (appeal_id, at)",
        """CREATE TABLE sends (
            appeal_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT NOT NULL, last_error TEXT)""",
        """CREATE TABLE web_users (
            name TEXT PRIMARY KEY, hash TEXT NOT NULL, created_at TEXT NOT NULL, failed INTEGER NOT NULL DEFAULT 0,
            locked_until TEXT)""",
        """CREATE TABLE audit (
            seq BIGSERIAL, at TEXT NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, target TEXT, source TEXT)""",
        "CREATE INDEX audit_at ON audit (at)",
        "CREATE TABLE blobs (key TEXT PRIMARY KEY, size BIGINT NOT NULL, chunks INTEGER NOT NULL, created_at TEXT NOT NULL)",
        """CREATE TABLE blob_chunks (
            key TEXT NOT NULL REFERENCES blobs (key) ON DELETE CASCADE, n INTEGER NOT NULL, data BYTEA NOT NULL,
            PRIMARY KEY (key, n))""",
    ]),
    (6, "outbox claims held by one process, with a lease", [
        "ALTER TABLE outbox ADD COLUMN claim_until TEXT",
    ]),
    (7, "messages not understood while the bot waited for an answer (redacted), for operators", [
        """CREATE TABLE unmatched_waiting (
            text TEXT NOT NULL, state TEXT NOT NULL, awaiting TEXT NOT NULL DEFAULT '', count INTEGER NOT NULL,
            last_at TEXT NOT NULL, PRIMARY KEY (text, state, awaiting))""",
    ]),
    (8, "an appeal's email thread (our emails, the platform's replies, encrypted), the IMAP position", [
        """CREATE TABLE appeal_thread (
            seq BIGSERIAL PRIMARY KEY, appeal_id TEXT NOT NULL, kind TEXT NOT NULL, message_id TEXT,
            in_reply_to TEXT, subject TEXT, at TEXT NOT NULL, body BYTEA, suggested TEXT,
            UNIQUE (appeal_id, kind, message_id))""",
        "CREATE INDEX appeal_thread_message ON appeal_thread (message_id)",
        "CREATE INDEX appeal_thread_subject ON appeal_thread (subject)",
        # appeals emailed before: their sent email (the Message-ID; the subject is in the package only)
        """INSERT INTO appeal_thread (appeal_id, kind, message_id, at) SELECT appeal_id, 'sent', message_id, sent_at
            FROM appeals WHERE message_id IS NOT NULL AND sent_at IS NOT NULL""",
        """CREATE TABLE imap_state (
            mailbox TEXT PRIMARY KEY, uidvalidity BIGINT NOT NULL, last_uid BIGINT NOT NULL)""",
    ]),
    (9, "conversation transcripts for review (redacted, encrypted, kept transcript_days)", [
        """CREATE TABLE transcripts (
            seq BIGSERIAL PRIMARY KEY, conv TEXT NOT NULL, chat TEXT NOT NULL, sender TEXT NOT NULL,
            at TEXT NOT NULL, state_before TEXT NOT NULL, state_after TEXT NOT NULL, prompt_id INTEGER,
            misread TEXT NOT NULL DEFAULT '', label TEXT, labelled_by TEXT, payload BYTEA NOT NULL,
            account TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX transcripts_conv ON transcripts (conv, seq)",
        "CREATE INDEX transcripts_at ON transcripts (at)",
        "CREATE INDEX transcripts_sender ON transcripts (sender)",
    ]),
    (10, "the appeal funnel: each attempt's steps, at most once each (no personal data)", [
        """CREATE TABLE funnel (
            attempt TEXT NOT NULL, step TEXT NOT NULL, slot TEXT NOT NULL DEFAULT '', prompt_id INTEGER,
            route TEXT, appeal_id TEXT, at TEXT NOT NULL, PRIMARY KEY (attempt, step, slot))""",
        "CREATE INDEX funnel_at ON funnel (at)",
        "CREATE INDEX funnel_appeal ON funnel (appeal_id)",
    ]),
]
SCHEMA_VERSION = SCHEMA_VERSIONS[-1][0]


_TURN_START = pgsql.SQL(
    "BEGIN; SELECT pg_try_advisory_xact_lock({a}, {b}); "
    "SELECT EXISTS (SELECT 1 FROM processed WHERE message_id = {message_id}); "
    "SELECT {columns} FROM conversations WHERE chat = {chat} AND sender = {sender}")


@lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """The shared SQL's `?` placeholders in psycopg's words (no statement has a literal ? or %)."""
    return sql.replace("?", "%s")


def _lock_id(*parts: str) -> int:
    """A signed 32-bit key for pg_advisory_xact_lock(namespace, key)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def redact(url: str) -> str:
    """The URL without its password: in the user part, or as a `password=` parameter."""
    url = re.sub(r"(//[^:/@]+):[^@]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


class PgStore(SqlStore):
    kind = "postgresql"
    SEQ = "seq"
    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    # A send claimed by a process that then died is retried by another after this long; the
    # Message-ID is the same, so the mailbox can tell a resend.
    SEND_LEASE = timedelta(minutes=5)

    def __init__(self, url: str, vault, account: str = DEFAULT_ACCOUNT, pool_size: int = 8,
                 outbox_lease_seconds: float | None = None):
        import psycopg
        from psycopg_pool import ConnectionPool

        # A wrong address or password fails here at once, with the server's reason (a pool would
        # retry quietly until its timeout).
        psycopg.connect(url, connect_timeout=10).close()
        super().__init__(vault, None, account, outbox_lease_seconds)
        self.url = url
        self.files = DbFiles(self)
        # The connection of the transaction in progress in this task (or worker thread, which
        # copies the task's context): statements inside a transaction or a turn use it.
        self._tx: ContextVar = ContextVar(f"pg_tx_{id(self)}", default=None)
        # Two pools: short statements and transactions that never await (taken on the loop, given
        # back at once), and the connections turns hold across awaits (taken off the loop, so a
        # busy moment waits for a free one instead of blocking every chat).
        self.pool = ConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True},
                                   open=False, name="dayu-bot")
        self.turn_pool = ConnectionPool(url, min_size=1, max_size=max(2, pool_size), kwargs={"autocommit": True},
                                        open=False, name="dayu-bot-turns")
        try:
            self.pool.open(wait=True, timeout=30)
            self.turn_pool.open(wait=True, timeout=30)
            self.migrations_applied = self.migrate()
        except BaseException:
            self.close()
            raise

    def describe(self) -> str:
        return redact(self.url)

    PING_TIMEOUT = 3.0  # seconds /readyz waits for a connection of the pool (the server gone: it fails)

    def ping(self) -> None:
        with self.pool.connection(timeout=self.PING_TIMEOUT) as conn:
            conn.execute("SELECT 1")

    @contextmanager
    def _conn(self):
        conn = self._tx.get()
        if conn is not None:
            yield conn
            return
        with self.pool.connection() as conn:
            yield conn

    def _exec(self, sql: str, args=()) -> int:
        with self._conn() as conn:
            return conn.execute(_pg(sql), args).rowcount

    def _query(self, sql: str, args=()) -> list[tuple]:
        with self._conn() as conn:
            cur = conn.execute(_pg(sql), args)
            return cur.fetchall() if cur.description else []

    @contextmanager
    def transaction(self):
        if self._tx.get() is not None:
            # nested: part of the enclosing transaction (a failure inside fails it whole, and the
            # engine answers the message in a new one: no savepoint round trips)
            yield
            return
        with self.pool.connection() as conn:
            with conn.transaction():
                token = self._tx.set(conn)
                try:
                    yield
                finally:
                    self._tx.reset(token)

    @asynccontextmanager
    async def turn(self, key: tuple[str, str], message_id: str | None = None, wait: bool = True):
        """One transaction for the turn, holding the conversation's advisory lock until it ends:
        commit_turn's writes (and files written meanwhile) commit when the block ends."""
        if self._tx.get() is not None:
            yield self._hold(key, message_id)
            return
        lock = (LOCK_TURN, _lock_id(*key))
        if self.turn_pool.get_stats().get("pool_available", 0) > 0:
            conn = self.turn_pool.getconn()  # one is free: no need to leave the loop
        else:
            conn = await asyncio.to_thread(self.turn_pool.getconn)
        try:
            # One round trip: BEGIN, the try-lock, and (valid when the lock was free) the
            # processed check and the conversation. Values are quoted by psycopg (sql.Literal).
            cur = conn.execute(_TURN_START.format(
                a=pgsql.Literal(lock[0]), b=pgsql.Literal(lock[1]), message_id=pgsql.Literal(message_id),
                columns=pgsql.SQL(self.CONVERSATION_COLUMNS), chat=pgsql.Literal(key[0]),
                sender=pgsql.Literal(key[1])))
            cur.nextset()
            got = cur.fetchone()[0]
            token = self._tx.set(conn)
            try:
                if got:
                    cur.nextset()
                    processed = cur.fetchone()[0]
                    cur.nextset()
                    row = cur.fetchone()
                    hold = TurnHold(True, processed, lambda: self._conversation(*key, row))
                elif wait:
                    # another process is in this creator's turn: wait off the loop, then read
                    await asyncio.to_thread(conn.execute, "SELECT pg_advisory_xact_lock(%s, %s)", lock)
                    hold = self._hold(key, message_id)
                else:
                    hold = TurnHold(False)
                yield hold
            finally:
                self._tx.reset(token)
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except Exception:  # the connection itself is gone: the server rolled back already
                pass
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self.turn_pool.putconn(conn)

    def _batch(self, statements: list[tuple[str, tuple]], returning: int | None = None) -> list:
        """In a transaction: all statements in one pipeline (one round trip instead of one each)."""
        conn = self._tx.get()
        if conn is None:
            return super()._batch(statements, returning)
        with conn.pipeline():
            cursors = [conn.execute(_pg(sql), args) for sql, args in statements]
        return [cur.fetchall() if i == returning else cur.rowcount for i, cur in enumerate(cursors)]

    @contextmanager
    def exclusive(self, name: str):
        with self.transaction():
            with self._conn() as conn:
                got = conn.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", (LOCK_JOB, _lock_id(name))).fetchone()[0]
            yield got

    def schema_version(self) -> int:
        rows = self._query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return rows[0][0]

    def migrate(self) -> list[int]:
        applied = []
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_MIGRATE,))  # one process at a time
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
            current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            for version, _, steps in SCHEMA_VERSIONS:
                if version <= current:
                    continue
                for step in steps:
                    conn.execute(step)
                conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                             (version, _iso(datetime.now(timezone.utc))))
                applied.append(version)
        return applied

    def close(self) -> None:
        self.pool.close()
        self.turn_pool.close()


class DbFiles:
    """Encrypted files as rows: `blobs` (one per key) and `blob_chunks` (1 MiB each), written and
    read a chunk at a time. Inside a transaction (a turn) they commit with it."""

    kind = "database"
    CHUNK = 1 << 20

    def __init__(self, store: PgStore):
        self.store = store

    def _insert(self, key: str, token: bytes) -> None:
        s = self.store
        chunks = max(1, -(-len(token) // self.CHUNK))
        s._exec("INSERT INTO blobs (key, size, chunks, created_at) VALUES (?, ?, ?, ?)",
                (safe_key(key), len(token), chunks, _iso(datetime.now(timezone.utc))))
        for i in range(chunks):
            s._exec("INSERT INTO blob_chunks (key, n, data) VALUES (?, ?, ?)",
                    (key, i, token[i * self.CHUNK:(i + 1) * self.CHUNK]))

    def write(self, key: str, token: bytes) -> None:
        with self.store.transaction():
            self.store._exec("DELETE FROM blobs WHERE key = ?", (safe_key(key),))
            self._insert(key, token)

    def chunks(self, key: str):
        """The stored bytes a chunk at a time; FileNotFoundError when absent."""
        rows = self.store._query("SELECT chunks FROM blobs WHERE key = ?", (safe_key(key),))
        if not rows:
            raise FileNotFoundError(key)
        for i in range(rows[0][0]):
            found = self.store._query("SELECT data FROM blob_chunks WHERE key = ? AND n = ?", (key, i))
            if not found:
                raise FileNotFoundError(key)  # deleted while being read
            yield bytes(found[0][0])

    def read(self, key: str) -> bytes:
        return b"".join(self.chunks(key))

    def exists(self, key: str) -> bool:
        return bool(self.store._query("SELECT 1 FROM blobs WHERE key = ?", (safe_key(key),)))

    def delete(self, key: str) -> None:
        self.store._exec("DELETE FROM blobs WHERE key = ?", (safe_key(key),))

    def delete_tree(self, prefix: str) -> bool:
        return self.store._exec("DELETE FROM blobs WHERE starts_with(key, ?)", (safe_key(prefix) + "/",)) > 0

    def write_tree(self, prefix: str, files: dict[str, bytes]) -> None:
        with self.store.transaction():  # the old folder and the new one swap in one commit
            self.delete_tree(prefix)
            for name, token in files.items():
                self._insert(f"{safe_key(prefix)}/{safe_key(name)}", token)

    def folders(self, prefix: str) -> list[str]:
        p = safe_key(prefix) + "/"
        rows = self.store._query(
            "SELECT DISTINCT split_part(substr(key, length(?) + 1), '/', 1) FROM blobs "
            "WHERE starts_with(key, ?) AND strpos(substr(key, length(?) + 1), '/') > 0", (p, p, p))
        return sorted(r[0] for r in rows)

    def files_with_age(self, prefix: str) -> list[tuple[str, float]]:
        now = datetime.now(timezone.utc)
        rows = self.store._query("SELECT key, created_at FROM blobs WHERE starts_with(key, ?)",
                                 (safe_key(prefix) + "/",))
        return [(k, (now - datetime.fromisoformat(at)).total_seconds()) for k, at in rows]

    def prune_empty(self, prefix: str) -> None:
        """Rows have no folders to leave behind."""

    def delete_temp_folders(self, prefix: str, names=None, older_than=None) -> int:
        return 0  # a folder is written in one transaction: there are no temp folders
