"""Rate-limited send queue, independent of any transport.

Every reply goes through one `Outbox`: it keeps the order of messages within a chat, lets chats
proceed independently, keeps a minimum gap between two sends to the same chat and a global cap
on sends per rolling minute, and splits long texts on paragraph boundaries. Nothing is dropped
for being over a limit: it waits. The clock and sleep are injected so tests need no real waiting.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import time
from typing import Awaitable, Callable, Deque

from bot import metrics
from bot.messages import Outgoing

log = logging.getLogger(__name__)

MAX_TEXT_LEN = 1500  # characters per message part; WeChat folds longer texts badly

SendFn = Callable[[Outgoing], Awaitable[None]]


def split_text(text: str, max_len: int = MAX_TEXT_LEN) -> list[str]:
    """Split `text` into parts of at most `max_len` characters.

    Cuts at blank lines (paragraphs) first, then at newlines, then after sentence punctuation,
    and only as a last resort in the middle of a line. Paragraphs are packed greedily, so short
    paragraphs share a part. The separator at a cut is dropped; nothing else is lost.
    """
    if max_len < 1:
        raise ValueError("max_len must be positive")
    if len(text) <= max_len:
        return [text] if text else []
    parts: list[str] = []
    for piece in _pack(re.split(r"\n[ \t]*\n", text), "\n\n", max_len):
        if len(piece) <= max_len:
            parts.append(piece)
            continue
        for line_piece in _pack(piece.split("\n"), "\n", max_len):
            if len(line_piece) <= max_len:
                parts.append(line_piece)
            else:
                parts.extend(_cut_line(line_piece, max_len))
    return [p for p in parts if p.strip()]


def _pack(chunks: list[str], sep: str, max_len: int) -> list[str]:
    """Join consecutive chunks with `sep` while the result stays within max_len.

    A single chunk longer than max_len is returned alone (the caller splits it further).
    """
    out: list[str] = []
    cur: str | None = None
    for chunk in chunks:
        if cur is None:
            cur = chunk
        elif len(cur) + len(sep) + len(chunk) <= max_len:
            cur = cur + sep + chunk
        else:
            out.append(cur)
            cur = chunk
    if cur is not None:
        out.append(cur)
    return out


_SENTENCE_END = re.compile(r"[。！？；!?;，,、 ]")


def _cut_line(line: str, max_len: int) -> list[str]:
    out = []
    while len(line) > max_len:
        window = line[:max_len]
        cut = max((m.end() for m in _SENTENCE_END.finditer(window)), default=0)
        if cut < max_len // 2:  # no good break point: hard cut
            cut = max_len
        out.append(line[:cut])
        line = line[cut:]
    if line:
        out.append(line)
    return out


def explode(out: Outgoing, max_len: int = MAX_TEXT_LEN) -> list[Outgoing]:
    """One Outgoing -> the messages to send: text parts (the @mention only on the first), then the file."""
    parts: list[Outgoing] = []
    for i, piece in enumerate(split_text(out.text, max_len)):
        parts.append(dataclasses.replace(out, text=piece, file=None, mention=out.mention and i == 0))
    if out.file is not None:
        parts.append(dataclasses.replace(out, text="", mention=False))
    # Only the last part carries the durable outbox row: the reply counts as sent once all of
    # it went out (a crash in between sends it whole again).
    parts = [dataclasses.replace(p, outbox_id=None) for p in parts[:-1]] + parts[-1:]
    return parts


class Outbox:
    """Per-chat FIFO queues drained by one worker per busy chat, under two limits.

    - `min_gap`: seconds between the starts of two sends to the same chat;
    - `per_minute`: sends (all chats together) in any rolling 60 seconds.

    A failing send is retried `retries` times with a growing delay; after that the part is
    given up and counted in `failed` (a transport that is down should wait inside `send`).
    """

    def __init__(self, send: SendFn, *, min_gap: float = 1.0, per_minute: int = 40,
                 max_len: int = MAX_TEXT_LEN, retries: int = 3, retry_delay: float = 2.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._send = send
        self.min_gap = max(0.0, float(min_gap))
        self.per_minute = int(per_minute)
        self.max_len = max_len
        self.retries = retries
        self.retry_delay = retry_delay
        self._clock = clock
        self._sleep = sleep
        self._queues: dict[str, Deque[Outgoing]] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._last_send: dict[str, float] = {}
        self._window: Deque[float] = collections.deque()  # start times of recent sends
        self._slot_lock = asyncio.Lock()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self.sent = 0
        self.failed = 0

    # -- public API --------------------------------------------------------------------------
    def put(self, out: Outgoing) -> int:
        """Queue one reply (split as needed); returns the number of parts queued."""
        if self._closed:
            raise RuntimeError("outbox is closed")
        parts = explode(out, self.max_len)
        if not parts:
            return 0
        self._queues.setdefault(out.chat, collections.deque()).extend(parts)
        self._pending += len(parts)
        self._idle.clear()
        worker = self._workers.get(out.chat)
        if worker is None or worker.done():
            self._workers[out.chat] = asyncio.create_task(self._run_chat(out.chat),
                                                          name=f"outbox-{len(self._workers)}")
        return len(parts)

    @property
    def pending(self) -> int:
        """Parts queued or being sent."""
        return self._pending

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is sent (or given up). False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self, timeout: float | None = None) -> bool:
        """Refuse new messages, flush the queues, stop the workers. False if not all was sent."""
        self._closed = True
        flushed = await self.drain(timeout)
        for task in list(self._workers.values()):
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()
        if not flushed:
            log.warning("outbox closed with %d unsent parts", self._pending)
        return flushed

    # -- internals ---------------------------------------------------------------------------
    async def _run_chat(self, chat: str) -> None:
        queue = self._queues[chat]
        while queue:
            out = queue[0]
            try:
                await self._wait_gap(chat)
                await self._acquire_slot()
                self._last_send[chat] = self._clock()
                await self._deliver(out)
            finally:
                queue.popleft()
                self._done_one()
        self._queues.pop(chat, None)
        self._workers.pop(chat, None)
        self._forget_old_chats()

    async def _wait_gap(self, chat: str) -> None:
        last = self._last_send.get(chat)
        if last is None:
            return
        wait = last + self.min_gap - self._clock()
        if wait > 0:
            await self._sleep(wait)

    async def _acquire_slot(self) -> None:
        async with self._slot_lock:  # FIFO: workers take global slots in arrival order
            while True:
                now = self._clock()
                while self._window and self._window[0] <= now - 60.0:
                    self._window.popleft()
                if len(self._window) < self.per_minute:
                    self._window.append(now)
                    return
                await self._sleep(self._window[0] + 60.0 - now)

    async def _deliver(self, out: Outgoing) -> None:
        for attempt in range(self.retries + 1):
            try:
                await self._send(out)
                self.sent += 1
                metrics.sent()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a transport error must not kill the worker
                if attempt == self.retries:
                    self.failed += 1
                    metrics.sent("failed")
                    log.error("send failed, giving up after %d attempts: %s (part: %s)",
                              attempt + 1, type(exc).__name__, "file" if out.file else "text")
                    return
                log.warning("send failed (%s), retrying", type(exc).__name__)
                metrics.sent("retry")
                await self._sleep(self.retry_delay * (2 ** attempt))

    def _done_one(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    def _forget_old_chats(self) -> None:
        if len(self._last_send) < 1024:
            return
        horizon = self._clock() - self.min_gap
        for chat in [c for c, t in self._last_send.items() if t < horizon and c not in self._queues]:
            del self._last_send[chat]
