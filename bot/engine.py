"""The engine every transport talks to: dedupe, per-conversation locks, room modes, admin
commands, then the dialog. It knows nothing of WeChat; transports know nothing of dialogs.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from bot.admin.commands import AdminCommands
from bot.appeals.crypto import Vault, load_or_create_key, secure_dir
from bot.dialog.flow import Dialog, awaiting_of
from bot.dialog.validators import find_id_numbers
from bot.kb import KnowledgeBase, KnowledgeError, load_knowledge
from bot.matching import Matcher
from bot.matching.intents import Reader
from bot.messages import Incoming, Outgoing
from bot.settings import Settings
from bot.store import Store

log = logging.getLogger(__name__)

PROCESSED_IDS_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class KnowledgeSnapshot:
    """A knowledge base and the matcher built from it; swapped as one on reload."""
    kb: KnowledgeBase
    matcher: Matcher
    loaded_at: datetime
    loaded_by: str
    reader: Reader | None = None  # intents and FAQ, built from the same base


@dataclass(frozen=True)
class ReloadReport:
    ok: bool
    text: str


class Engine:
    def __init__(self, settings: Settings, store: Store, vault: Vault, snapshot: KnowledgeSnapshot, ocr=None):
        self.settings = settings
        self.store = store
        self.vault = vault
        self.snapshot = snapshot
        self.dialog = Dialog(settings, store, vault, ocr)
        self.admin = AdminCommands(self)
        self.started_at = datetime.now(timezone.utc)
        self._locks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._reload_lock = asyncio.Lock()

    @classmethod
    async def open(cls, settings: Settings) -> "Engine":
        secure_dir(settings.data_dir)
        vault = Vault(load_or_create_key(settings))
        snapshot = cls._load_snapshot(settings, "start")
        store = Store(settings.db_path, vault)
        ocr = None
        if settings.ocr_enabled:
            from bot.ocr import ScreenshotReader, ocr_available

            if ocr_available():  # a cheap check: the engine itself loads on the first image
                ocr = ScreenshotReader.from_settings(settings)
        return cls(settings, store, vault, snapshot, ocr)

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
        now = msg.at or datetime.now(timezone.utc)
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
        lock = self._lock(msg.conversation_key)
        async with lock:
            if self.store.is_processed(msg.message_id):
                return []
            snapshot = self.snapshot
            try:
                if self.admin.is_command(msg.text) and (not msg.room or msg.mention):
                    replies = await self.admin.handle(msg, now)
                else:
                    conv = self.store.load(msg.chat, msg.sender)
                    replies = await self.dialog.handle(snapshot.kb, snapshot.matcher, msg, conv, now,
                                                       snapshot.reader)
                    conv.last_activity, conv.reminded = now, False
                    self.store.save(conv)
                    for r in replies:
                        r.state = conv.state
                        r.awaiting = awaiting_of(conv)
            except Exception:
                log.exception("message %s: handling failed", msg.message_id)
                return [Outgoing(chat=msg.chat, to=msg.sender, mention=msg.room,
                                 text=snapshot.kb.responses["error_generic"])]
            self.store.mark_processed(msg.message_id, now)
            self.store.record("message", now)
        return replies

    async def tick(self, now: datetime | None = None) -> list[Outgoing]:
        """Fire due reminders and expiries. Safe to call often; state lives in SQLite."""
        now = now or datetime.now(timezone.utc)
        due = self.store.idle_conversations(now - timedelta(minutes=self.settings.reminder_minutes))
        out: list[Outgoing] = []
        for stale in due:
            async with self._lock(stale.key):
                conv = self.store.load(stale.chat, stale.sender)  # may have moved on meanwhile
                if conv.state == "idle" or conv.last_activity is None:
                    continue
                replies = self.dialog.on_idle(self.snapshot.kb, conv, now)
                self.store.save(conv)
                for r in replies:
                    r.state = conv.state
                    r.awaiting = awaiting_of(conv)
                out += replies
        self.store.prune_processed(now - PROCESSED_IDS_KEPT)
        return out

    # -- knowledge reload ----------------------------------------------------------------
    def reload_on_sighup(self) -> None:
        """Operators on the host: `kill -HUP <pid>` reloads like #reload (call inside the loop)."""
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("SIGHUP")))
        except (NotImplementedError, RuntimeError, AttributeError):  # not on this platform
            pass

    async def reload(self, by: str) -> ReloadReport:
        """Re-read the knowledge dir, validate, and swap atomically; keep the old base on error."""
        async with self._reload_lock:
            old = self.snapshot
            try:
                new = await asyncio.to_thread(self._load_snapshot, self.settings, by)
            except KnowledgeError as exc:
                log.warning("knowledge reload by %s failed: %s", by, exc)
                return ReloadReport(False, f"重载失败,继续使用原知识库(版本 {old.kb.version})。\n"
                                           f"错误:{exc.file}" + (f" 第 {exc.line} 行" if exc.line else "")
                                           + f":{exc.reason}")
            self.snapshot = new
            before, after = old.kb.summary(), new.kb.summary()
            added = sorted(after.keys() - before.keys())
            removed = sorted(before.keys() - after.keys())
            changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
            log.info("knowledge reloaded by %s: version %s", by, new.kb.version)

            def ids(xs):
                return "、".join(map(str, xs)) if xs else "无"

            return ReloadReport(True, f"知识库已重载:版本 {old.kb.version} -> {new.kb.version}\n"
                                      f"新增 {len(added)} 条({ids(added)}),删除 {len(removed)} 条({ids(removed)}),"
                                      f"修改 {len(changed)} 条({ids(changed)});共 {len(new.kb.prompts)} 条。")
