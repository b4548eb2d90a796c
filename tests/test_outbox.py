"""Outbox: order per chat, independent chats, per-chat gap, global per-minute cap, splitting,
retries, and nothing dropped. Runs on virtual time: no real waiting."""
from __future__ import annotations

import asyncio
import heapq
import itertools
from pathlib import Path

import pytest

from bot.messages import Outgoing
from bot.transport.outbox import Outbox, explode, split_text


class VirtualTime:
    """clock() and sleep() for the outbox; `run()` advances time only when every task waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + max(0.0, delay), next(self._seq), fut))
        await fut

    async def _settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    async def run(self, awaitable, limit: float = 100_000.0):
        task = asyncio.ensure_future(awaitable)
        while True:
            await self._settle()
            if task.done():
                return task.result()
            if not self._timers:
                raise AssertionError("deadlock: nothing scheduled and the task is not done")
            deadline, _, fut = heapq.heappop(self._timers)
            if deadline > limit:
                raise AssertionError(f"virtual time limit exceeded ({deadline})")
            self.now = max(self.now, deadline)
            if not fut.done():
                fut.set_result(None)


class Recorder:
    def __init__(self, vt: VirtualTime, fail: dict[str, int] | None = None) -> None:
        self.vt = vt
        self.sent: list[tuple[float, str, str]] = []  # (time, chat, text)
        self.fail = dict(fail or {})  # text -> number of failures before success
        self.calls = 0

    async def __call__(self, out: Outgoing) -> None:
        self.calls += 1
        key = out.text or str(out.file)
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            raise ConnectionError("transport down")
        self.sent.append((self.vt.now, out.chat, key))

    def texts(self, chat: str) -> list[str]:
        return [t for _, c, t in self.sent if c == chat]

    def times(self, chat: str) -> list[float]:
        return [ts for ts, c, _ in self.sent if c == chat]


def make(vt: VirtualTime, rec: Recorder, **kw) -> Outbox:
    kw.setdefault("min_gap", 1.0)
    kw.setdefault("per_minute", 40)
    return Outbox(rec, clock=vt.clock, sleep=vt.sleep, **kw)


def out(chat: str, text: str, **kw) -> Outgoing:
    return Outgoing(chat=chat, to=kw.pop("to", chat), text=text, **kw)


# -- splitting ---------------------------------------------------------------------------------
def test_short_text_is_one_part():
    assert split_text("你好", 10) == ["你好"]
    assert split_text("", 10) == []


def test_split_prefers_blank_lines_and_packs_paragraphs():
    paras = ["一" * 400, "二" * 400, "三" * 400, "四" * 400, "五" * 400]
    text = "\n\n".join(paras)
    parts = split_text(text, 1500)
    assert all(len(p) <= 1500 for p in parts)
    # three paragraphs fit in one part (3*400 + 2*2 <= 1500), the other two in the next
    assert parts == ["\n\n".join(paras[:3]), "\n\n".join(paras[3:])]


def test_split_falls_back_to_newlines_then_sentences_then_hard_cut():
    lines = ["行" * 300 + str(i) for i in range(8)]  # one paragraph of 8 lines
    parts = split_text("\n".join(lines), 1000)
    assert all(len(p) <= 1000 for p in parts)
    assert "\n".join(parts) == "\n".join(lines)  # cut only at newlines

    sentences = "".join("这是一句话。" for _ in range(400))  # 2400 chars, no newline
    parts = split_text(sentences, 1000)
    assert all(len(p) <= 1000 for p in parts) and "".join(parts) == sentences
    assert all(p.endswith("。") for p in parts[:-1])

    blob = "x" * 2500
    parts = split_text(blob, 1000)
    assert parts == ["x" * 1000, "x" * 1000, "x" * 500]


def test_explode_mentions_first_part_and_sends_file_last(tmp_path: Path):
    f = tmp_path / "guide.png"
    o = Outgoing(chat="room@chatroom", to="u1", text="A" * 10 + "\n\n" + "B" * 10, mention=True, file=f)
    parts = explode(o, max_len=12)
    assert [p.text for p in parts] == ["A" * 10, "B" * 10, ""]
    assert [p.mention for p in parts] == [True, False, False]
    assert [p.file for p in parts] == [None, None, f]
    assert all(p.chat == o.chat and p.to == o.to for p in parts)


# -- queueing ----------------------------------------------------------------------------------
async def test_order_per_chat_and_chats_independent():
    vt = VirtualTime()
    rec = Recorder(vt)
    box = make(vt, rec, min_gap=2.0)
    for i in range(5):
        box.put(out("A", f"a{i}"))
        box.put(out("B", f"b{i}"))
    box.put(out("C", "c0"))
    assert await vt.run(box.drain())
    assert rec.texts("A") == [f"a{i}" for i in range(5)]
    assert rec.texts("B") == [f"b{i}" for i in range(5)]
    # per-chat gap, but chats do not wait for each other
    for chat in "AB":
        ts = rec.times(chat)
        assert all(b - a >= 2.0 for a, b in zip(ts, ts[1:]))
    assert rec.times("A")[0] == rec.times("B")[0] == rec.times("C")[0] == 0.0
    assert rec.times("A")[-1] == pytest.approx(8.0)
    assert box.pending == 0 and box.sent == 11


async def test_global_per_minute_cap_delays_but_drops_nothing():
    vt = VirtualTime()
    rec = Recorder(vt)
    box = make(vt, rec, min_gap=0.0, per_minute=5)
    for i in range(12):
        box.put(out(f"chat{i}", f"m{i}"))
    assert await vt.run(box.drain())
    times = sorted(t for t, _, _ in rec.sent)
    assert len(times) == 12
    for i, t in enumerate(times):  # any rolling 60 s holds at most 5 sends
        assert sum(1 for u in times if t <= u < t + 60.0) <= 5
    assert times[-1] >= 120.0
    # FIFO across chats for the global slots
    assert [t for _, _, t in sorted(rec.sent)] == [f"m{i}" for i in range(12)]


async def test_burst_nothing_dropped_order_kept():
    vt = VirtualTime()
    rec = Recorder(vt)
    box = make(vt, rec, min_gap=1.0, per_minute=40)
    expected: dict[str, list[str]] = {"A": [], "B": [], "C": []}
    for i in range(200):
        chat = "ABC"[i % 3]
        box.put(out(chat, f"{chat}{i}"))
        expected[chat].append(f"{chat}{i}")
    assert box.pending == 200
    assert await vt.run(box.drain())
    for chat, texts in expected.items():
        assert rec.texts(chat) == texts
    assert len(rec.sent) == 200 and box.failed == 0


async def test_long_text_is_split_and_sent_in_order():
    vt = VirtualTime()
    rec = Recorder(vt)
    box = make(vt, rec, min_gap=1.0, max_len=100)
    long = "\n\n".join(f"第{i}段" + "字" * 80 for i in range(5))
    n = box.put(out("A", long))
    box.put(out("A", "after"))
    assert n == 5
    assert await vt.run(box.drain())
    got = rec.texts("A")
    assert got[-1] == "after" and "\n\n".join(got[:-1]) == long
    assert all(len(t) <= 100 for t in got)


async def test_retry_keeps_order_and_gives_up_without_blocking_others():
    vt = VirtualTime()
    rec = Recorder(vt, fail={"a1": 2, "b0": 99})
    box = make(vt, rec, min_gap=0.5, retries=3, retry_delay=1.0)
    for t in ("a0", "a1", "a2"):
        box.put(out("A", t))
    box.put(out("B", "b0"))
    box.put(out("B", "b1"))
    assert await vt.run(box.drain())
    assert rec.texts("A") == ["a0", "a1", "a2"]
    assert rec.texts("B") == ["b1"]
    assert box.failed == 1 and box.sent == 4


async def test_close_flushes_and_refuses_new_messages():
    vt = VirtualTime()
    rec = Recorder(vt)
    box = make(vt, rec, min_gap=5.0)
    for i in range(3):
        box.put(out("A", f"a{i}"))
    assert await vt.run(box.close())
    assert rec.texts("A") == ["a0", "a1", "a2"]
    with pytest.raises(RuntimeError):
        box.put(out("A", "late"))


async def test_drain_timeout_reports_unsent():
    rec_sent: list[str] = []
    gate = asyncio.Event()

    async def slow_send(o: Outgoing) -> None:
        await gate.wait()
        rec_sent.append(o.text)

    box = Outbox(slow_send, min_gap=0.0, per_minute=40)
    box.put(out("A", "x"))
    assert not await box.drain(timeout=0.05)
    assert box.pending == 1
    gate.set()
    assert await box.drain(timeout=1.0)
    assert rec_sent == ["x"]
