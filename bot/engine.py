"""The engine every transport talks to: dedupe, per-conversation locks, room modes, admin
commands, then the dialog. It knows nothing of WeChat; transports know nothing of dialogs.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bot import metrics
from bot.admin.commands import AdminCommands, already_loaded
from bot.appeals.imap import ReplyReader
from bot.appeals.sender import AppealSender
from bot.appeals.status import change_status
from bot.appeals.crypto import Vault, load_or_create_key, secure_dir
from bot.dialog import transcript
from bot.dialog.flow import Dialog, awaiting_of
from bot.dialog.validators import find_id_numbers
from bot.kb import KnowledgeBase, KnowledgeError, load_knowledge
from bot.matching import Matcher
from bot.matching.intents import Reader
from bot.messages import Incoming, Outgoing
from bot.settings import Settings
from bot.store import AlreadyProcessed, KeyMismatch, SqlStore, Writes, open_store

log = logging.getLogger(__name__)

PROCESSED_IDS_KEPT = timedelta(days=7)
MAX_MESSAGE_CHARS = 4000  # longer texts are cut before any scan (rooms too)
JANITOR_EVERY = timedelta(minutes=5)
JANITOR_MIN_AGE = timedelta(minutes=10)


def knowledge_signature(knowledge_dir) -> tuple:
    """What the knowledge files look like on disk (names, sizes, mtimes): cheap to compare on ticks."""
    from pathlib import Path

    d = Path(knowledge_dir)
    files = [d] if d.is_file() else [*d.glob("*.yaml"), *d.glob("*.yml"), d / "userdict.txt"]
    out = []
    for f in sorted(files):
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        out.append((f.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


class StartupError(Exception):
    """The bot cannot start (a wrong key, ...): one clear line, no traceback."""


def open_key_and_store(settings: Settings, check_key: bool = True) -> tuple[Vault, SqlStore]:
    """The key and the store every command works on, the key checked against the store's unless
    `check_key` is False (operator commands that report an unreadable package themselves); one
    clear line (StartupError) when either is wrong or unreachable."""
    from bot.appeals.crypto import VaultError

    try:
        vault = Vault(load_or_create_key(settings))
    except VaultError as exc:  # an invalid key or an unreadable key file
        raise StartupError(str(exc)) from None
    store = open_store_or_fail(settings, vault)
    if not check_key:
        return vault, store
    try:
        store.check_key()
    except KeyMismatch:
        store.close()
        source = "BOT_APPEAL_KEY/appeal_key" if settings.appeal_key else f"the key file {settings.key_file}"
        raise StartupError(
            f"the encryption key ({source}) is not the one the data in {store.describe()} was written with; "
            "start with the original key, or use another data dir or database") from None
    return vault, store


def open_store_or_fail(settings: Settings, vault: Vault) -> SqlStore:
    """The configured store, or one clear line (StartupError) when it cannot be opened."""
    from bot.store import StoreUrlError

    try:
        return open_store(settings, vault)
    except StoreUrlError as exc:
        raise StartupError(f"database_url: {exc}") from None
    except Exception as exc:  # an unreachable server, a refused password, a read-only file
        from bot.store.postgres import redact

        where = redact(settings.database_url) if settings.database_url else str(settings.db_path)
        raise StartupError(f"cannot open the store at {where}: {type(exc).__name__}: "
                           f"{redact(str(exc)).strip().splitlines()[0] if str(exc).strip() else ''}") from None


def _crash_point(name: str) -> None:
    """Test hook: the crash tests patch this to end the process at a named point of a turn."""


@dataclass(frozen=True)
class KnowledgeSnapshot:
    """A knowledge base and the matcher built from it; swapped as one on reload."""
    kb: KnowledgeBase
    matcher: Matcher
    loaded_at: datetime
    loaded_by: str
    reader: Reader  # intents and FAQ, built from the same base


@dataclass(frozen=True)
class ReloadReport:
    ok: bool
    text: str


class Engine:
    def __init__(self, settings: Settings, store: SqlStore, vault: Vault, snapshot: KnowledgeSnapshot, ocr=None):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.snapshot = snapshot
        self.dialog = Dialog(settings, store, vault, ocr)
        self.admin = AdminCommands(self)
        self.started_at = datetime.now(timezone.utc)
        self._locks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._reload_lock = asyncio.Lock()
        self._last_janitor: datetime | None = None
        self._kb_signature = knowledge_signature(settings.knowledge_dir)
        self._kb_generation = store.kb_generation()  # bumped by any process's reload
        self.sender = AppealSender(self)
        self.replies = ReplyReader(self)  # the platform's replies, by IMAP

    @classmethod
    async def open(cls, settings: Settings) -> "Engine":
        secure_dir(settings.data_dir)
        snapshot = cls._load_snapshot(settings, "start")
        vault, store = open_key_and_store(settings)
        ocr = None
        if settings.ocr_enabled:
            from bot.ocr import ScreenshotReader, ocr_available

            if ocr_available():  # a cheap check: the engine itself loads on the first image
                ocr = ScreenshotReader.from_settings(settings)
        engine = cls(settings, store, vault, snapshot, ocr)
        engine.janitor(min_age=timedelta(0))  # at start no turn is in flight: leftovers are a crash's
        return engine

    @staticmethod
    def _load_snapshot(settings: Settings, by: str) -> KnowledgeSnapshot:
        kb = load_knowledge(settings.knowledge_dir)
        return KnowledgeSnapshot(kb, Matcher(kb), datetime.now(timezone.utc), by, Reader(kb))

    async def close(self) -> None:
        self.store.close()

    def greeting(self) -> str:
        return self.snapshot.kb.responses["greeting_new_friend"]

    # -- messages ------------------------------------------------------------------------
    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    def room_mode(self, room: str) -> str:
        return self.store.room_mode(room) or self.settings.room_mode

    async def handle(self, msg: Incoming) -> list[Outgoing]:
        """Handle one message as one transaction; returns its replies, already in the outbox.

        A redelivered message id returns [] (its replies, if not yet sent, wait in the outbox)."""
        started = time.perf_counter()  # bot_turn_seconds: from here to the replies committed
        now = msg.at or datetime.now(timezone.utc)
        # Bounded work per message, before any scan; undecodable bytes (lone surrogates from a
        # terminal or a broken client) become "?" and NUL characters go (PostgreSQL refuses them
        # in text), so no later step can choke on them.
        text = msg.text[:MAX_MESSAGE_CHARS].encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
        if text != msg.text:
            msg = dataclasses.replace(msg, text=text)
        if msg.room:
            if self.settings.room_allowlist and msg.chat not in self.settings.room_allowlist:
                return []
            mode = self.room_mode(msg.chat)
            admin_call = msg.mention and self.admin.is_command(msg.text)
            # An ID number posted in a room gets a "please recall it" warning even unmentioned.
            privacy_alert = mode != "off" and bool(find_id_numbers(msg.text))
            if not (admin_call or privacy_alert) and (mode == "off" or (mode == "mention" and not msg.mention)):
                return []
        # Hold the lock over the whole turn: two messages of one user never interleave.
        # The snapshot is taken once, so a reload mid-turn does not change the base under it.
        # The store's turn holds the conversation across processes too (PostgreSQL: an advisory
        # lock in the turn's transaction, which commits when the block ends).
        lock = self._lock(msg.conversation_key)
        async with lock:
            snapshot = self.snapshot
            writes = Writes()
            try:
                async with self.store.turn(msg.conversation_key, msg.message_id) as hold:
                    if hold.processed:
                        return []
                    conv = None
                    if self.admin.is_command(msg.text) and (not msg.room or msg.mention):
                        replies = await self.admin.handle(msg, now)
                    else:
                        conv = hold.conversation
                        conv.account = self.settings.account  # reminders go out through this account
                        was = transcript.before(conv)
                        replies = await self.dialog.handle(snapshot.kb, snapshot.matcher, msg, conv, now,
                                                           snapshot.reader, writes)
                        conv.last_activity, conv.reminded = now, False
                        for r in replies:
                            r.state = conv.state
                            r.awaiting = awaiting_of(conv)
                        if self.settings.transcript_days > 0:  # kept for review (redacted, encrypted)
                            transcript.record(snapshot.kb, self.store, writes, msg, was, conv, replies, now)
                    for r in replies:
                        r.reply_to = msg.message_id
                    writes.record("message", now)
                    _crash_point("before_commit")
                    self.store.commit_turn(conv, msg.message_id, now, writes, replies)
                _crash_point("after_commit")
            except AlreadyProcessed:
                return []  # another process committed this message id first
            except Exception as exc:
                # Nothing of the turn is kept; the message is answered once and not retried.
                log.error("message %s: handling failed (%s)", msg.message_id, type(exc).__name__,
                          exc_info=log.isEnabledFor(logging.DEBUG))
                replies = [Outgoing(chat=msg.chat, to=msg.sender, mention=msg.room, reply_to=msg.message_id,
                                    text=snapshot.kb.responses["error_generic"])]
                failed = Writes()
                failed.record("message", now)
                try:
                    async with self.store.turn(msg.conversation_key):
                        self.store.commit_turn(None, msg.message_id, now, failed, replies)
                except AlreadyProcessed:
                    return []
                metrics.turn_done(msg, started)
                return replies
            writes.run_after_commit(self.store.files)
        metrics.turn_done(msg, started)
        return replies

    async def tick(self, now: datetime | None = None) -> list[Outgoing]:
        """Fire due reminders and expiries. Safe to call often; state lives in SQLite."""
        now = now or datetime.now(timezone.utc)
        due = self.store.idle_conversations(now - timedelta(minutes=self.settings.reminder_minutes))
        out: list[Outgoing] = []
        for stale in due:
            async with self._lock(stale.key), self.store.turn(stale.key, wait=False) as hold:
                if not hold:
                    continue  # another process is in this conversation now; its state decides
                conv = hold.conversation  # read again under the lock: it may have moved on
                if conv.state == "idle" or conv.last_activity is None:
                    continue
                writes = Writes()
                self.dialog.use(self.snapshot.kb, self.snapshot.matcher, self.snapshot.reader)
                replies = self.dialog.on_idle(conv, now, writes)
                for r in replies:
                    r.state = conv.state
                    r.awaiting = awaiting_of(conv)
                    r.account = conv.account or None  # the account the creator talks to
                self.store.commit_turn(conv, None, now, writes, replies)
            writes.run_after_commit(self.store.files)
            out += replies
        out += await self.sender.work(now)  # due appeal emails (queued at 确认, or retries)
        out += await self.replies.work(now)  # the platform's replies, when a poll is due
        generation = self.store.kb_generation()
        if generation != self._kb_generation:
            # another process reloaded (#reload, the web console): follow it
            self._kb_generation = generation
            report = await self.reload("another process", broadcast=False)
            if not report.ok:
                log.warning("another process reloaded, but the knowledge files do not load here; keeping version %s",
                            self.snapshot.kb.version)
        if knowledge_signature(self.settings.knowledge_dir) != self._kb_signature:
            # the knowledge files changed on disk (the web console taught a phrasing, an operator
            # edited a file): reload like #reload; a broken file keeps the old base
            report = await self.reload("file change")
            if not report.ok:
                log.warning("knowledge files changed but do not load; keeping version %s", self.snapshot.kb.version)
        self.store.prune_processed(now - PROCESSED_IDS_KEPT)
        self.store.prune_outbox(now - PROCESSED_IDS_KEPT)
        self.store.prune_transcripts(now - timedelta(days=self.settings.transcript_days))
        if self._last_janitor is None or now - self._last_janitor >= JANITOR_EVERY:
            self.janitor()
            self.expire_packages(now)
            self._last_janitor = now
        return out

    async def drain_sends(self, now: datetime | None = None, rounds: int = 3) -> list[Outgoing]:
        """Attempt what is due in the send queue now (a few rounds, no waiting): replay's exit."""
        now = now or datetime.now(timezone.utc)
        out: list[Outgoing] = []
        for _ in range(rounds):
            if not self.store.due_sends(now):
                break
            out += await self.sender.work(now)
        return out

    def expire_packages(self, now: datetime) -> int:
        """Delete packages `appeal_retention_days` after their appeal was resolved or rejected."""
        from bot.appeals.package import delete_package

        ids = self.store.expire_packages(now - timedelta(days=self.settings.appeal_retention_days), now,
                                         lambda a: delete_package(self.settings, a, area=self.store.files))
        if ids:
            log.info("retention: deleted %d appeal packages", len(ids))
        return len(ids)

    def change_appeal_status(self, appeal_id: str, status: str, by: str, note: str | None = None,
                             now: datetime | None = None, items=None) -> dict:
        """An operator's status (reviewing, resolved, rejected, need_more with the items to send
        again): recorded with who, when and the note, and the creator told in their DM through the outbox."""
        return change_status(self.settings, self.store, self.snapshot.kb, appeal_id, status, by, note, now, items)

    # -- delivery ----------------------------------------------------------------------------
    def unsent(self) -> list[Outgoing]:
        """Replies committed and not yet marked sent (after a crash: those of the last turns)."""
        return self.store.unsent()

    def mark_sent(self, replies: list[Outgoing]) -> None:
        self.store.mark_sent([r.outbox_id for r in replies if r.outbox_id is not None])

    async def deliver(self, send) -> int:
        """Send every unsent reply in order with `send(reply)` (awaitable), marking each sent
        after it went out: at-least-once at exactly that point, exactly-once everywhere else."""
        count = 0
        while True:
            batch = self.store.unsent()
            if not batch:
                return count
            _crash_point("claimed")
            for r in batch:
                if not self.store.still_claimed(r.outbox_id):
                    continue  # taken over by another process (this one stalled past the lease)
                await send(r)
                metrics.sent()
                _crash_point("after_send")
                self.store.mark_sent([r.outbox_id])
                count += 1

    def janitor(self, min_age: timedelta = JANITOR_MIN_AGE) -> dict:
        """Remove working files no conversation references and temp package folders, when older
        than a few minutes (a turn in flight may have written a file it has not committed yet)."""
        from bot.store.janitor import clean

        with self.store.exclusive("janitor") as mine:
            if not mine:  # another process is cleaning now
                return {"files": 0, "temp_packages": 0}
            counts = clean(self.store, min_age_seconds=min_age.total_seconds())
        if any(counts.values()):
            log.info("janitor removed %d working files, %d temp package folders",
                     counts["files"], counts["temp_packages"])
        return counts

    # -- knowledge reload ----------------------------------------------------------------
    def _broken_cases(self, kb: KnowledgeBase) -> list:
        from bot.matching.cases import broken_cases, load_cases

        return broken_cases(kb, load_cases(self.settings.knowledge_dir))

    def reload_on_sighup(self) -> None:
        """Operators on the host: `kill -HUP <pid>` reloads like #reload (call inside the loop)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        except (NotImplementedError, RuntimeError, AttributeError):  # not on this platform
            pass

    async def reload(self, by: str, broadcast: bool = True, check_cases: bool = False) -> ReloadReport:
        """Re-read the knowledge dir, validate, and swap atomically; keep the old base on error.
        A successful reload is announced through the store: every other process follows.
        `check_cases` (#reload without 确认): refused when it would break a saved regression case."""
        async with self._reload_lock:
            old = self.snapshot
            try:
                new = await asyncio.to_thread(self._load_snapshot, self.settings, by)
                broken = await asyncio.to_thread(self._broken_cases, new.kb) if check_cases else []
            except (KnowledgeError, ValueError) as exc:
                log.warning("knowledge reload by %s failed: %s", by, exc)
                where = (f"{exc.file}" + (f" 第 {exc.line} 行" if exc.line else "") + f":{exc.reason}"
                         if isinstance(exc, KnowledgeError) else str(exc))
                return ReloadReport(False, f"重载失败,继续使用原知识库(版本 {old.kb.version})。\n错误:{where}")
            if broken:
                from bot.matching.cases import report

                return ReloadReport(False, f"未重载:新知识库会让 {len(broken)} 个已保存的用例不再成立,"
                                           f"继续使用原知识库(版本 {old.kb.version})。\n{report(broken)}\n"
                                           "确认仍要重载请发:#reload 确认")
            self.snapshot = new
            self._kb_signature = knowledge_signature(self.settings.knowledge_dir)
            if broadcast:
                self._kb_generation = self.store.bump_kb_generation()
            if new.kb.version == old.kb.version:  # the same content (the version has its digest):
                return ReloadReport(True, already_loaded(old, self.settings))  # e.g. the watcher was first
            d = old.kb.diff(new.kb)
            added, removed, changed = d["added"], d["removed"], d["changed"]
            log.info("knowledge reloaded by %s: version %s", by, new.kb.version)

            def ids(xs):
                return "、".join(map(str, xs)) if xs else "无"

            return ReloadReport(True, f"知识库已重载:版本 {old.kb.version} -> {new.kb.version}\n"
                                      f"新增 {len(added)} 条({ids(added)}),删除 {len(removed)} 条({ids(removed)}),"
                                      f"修改 {len(changed)} 条({ids(changed)});共 {len(new.kb.prompts)} 条。")
