#!/usr/bin/env python3
"""How long one huge message can hold the event loop (and so delay every other chat).

A room message of 2 MB of digits (and one of 2 MB of mixed text with ID-shaped runs) arrives
together with a DM from another creator; we measure how long the big message's turn takes on the
loop and how late the DM's reply comes. Bounded work per message (the engine cuts texts at
MAX_MESSAGE_CHARS before any scan; the ID-number scan is linear and cached) keeps both small.

Usage: python bench/latency_bench.py [--runs N]
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.engine import Engine  # noqa: E402
from bot.messages import Incoming  # noqa: E402
from bot.settings import load_settings  # noqa: E402

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
BIG = {
    "digits": "1" * 2_000_000,
    "spaced digits": "1 " * 1_000_000,
    "ID-shaped runs": ("11010519491231002X 订单 " * 90_000)[:2_000_000],
}


async def measure(engine: Engine, text: str, i: int) -> tuple[float, float]:
    now = datetime.now(timezone.utc)
    big = Incoming(f"big-{i}", "room1", "spammer", text, now, room=True, mention=False)
    dm = Incoming(f"dm-{i}", f"u{i}", f"u{i}", "扫描二维码后提示“未知客户端”", now)
    t0 = time.perf_counter()
    big_task = asyncio.create_task(engine.handle(big))
    dm_task = asyncio.create_task(engine.handle(dm))
    done_at = {}
    big_task.add_done_callback(lambda _: done_at.setdefault("big", time.perf_counter()))
    dm_task.add_done_callback(lambda _: done_at.setdefault("dm", time.perf_counter()))
    await asyncio.gather(big_task, dm_task)
    return (done_at["big"] - t0) * 1000, (done_at["dm"] - t0) * 1000


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        settings = load_settings(data_dir=Path(d) / "data", env={"BOT_APPEAL_KEY": KEY, "BOT_OCR_ENABLED": "false",
                                                                 "BOT_ROOM_MODE": "mention"})
        engine = await Engine.open(settings)
        try:
            await measure(engine, "warm-up", -1)
            print(f"{'message (2 MB)':<16} {'big turn ms (median / max)':>28} {'other DM reply ms (median / max)':>34}")
            for name, text in BIG.items():
                big, dm = [], []
                for i in range(args.runs):
                    b, m = await measure(engine, text, hash((name, i)) & 0xFFFFFF)
                    big.append(b)
                    dm.append(m)
                print(f"{name:<16} {statistics.median(big):>17.1f} / {max(big):>7.1f} "
                      f"{statistics.median(dm):>23.1f} / {max(dm):>7.1f}")
        finally:
            await engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
