#!/usr/bin/env python3
"""Time from the platform's APPEND of a reply to the creator's notification committed, with
`imap_poll_seconds = 0` (a poll on every tick) and a tick loop.

A real Dovecot (tests/imap_support.py: Debian's dovecot-imapd, a throwaway server on 127.0.0.1) and
a real SMTP server (aiosmtpd) run locally; the bot is driven in process through the engine: an
email-route appeal is collected and sent, then the engine ticks in a loop (as `run` does every 30 s,
here back to back) while the "platform" APPENDs replies, one at a time, each threaded by
In-Reply-To. For each reply: APPEND started -> the tick that committed the creator's notification
returned. Also the tick rate (each tick: a whole IMAP poll, login to logout, plus the other periodic
work).

Usage: python bench/imap_bench.py [--runs N] [--postgres]   (needs dovecot-imapd: `make dovecot`;
--postgres also Debian's postgresql, as for the tests)
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from email.utils import make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from driver import Driver, email_answers, run_appeal  # noqa: E402
from imap_support import start_imap  # noqa: E402
from media import make_jpeg, make_mp4, make_png  # noqa: E402
from test_appeal_delivery import KEY, SmtpServer, smtp_env  # noqa: E402


def reply(mid: str, n: int) -> bytes:
    return (f"From: support@platform.invalid\r\nTo: bot@example.invalid\r\nSubject: =?utf-8?b?5Zue5aSNOg==?=\r\n"
            f"Message-ID: {make_msgid(domain='platform.invalid')}\r\nIn-Reply-To: {mid}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"您好,第 {n} 次回复:请补充清晰的手持身份证照片。\r\n").encode()


async def main(runs: int, postgres: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    media = {"handheld": make_jpeg(tmp / "h.jpg", seed=1), "front": make_png(tmp / "f.png", seed=2),
             "back": make_jpeg(tmp / "b.jpg", seed=3), "screenshot": make_png(tmp / "s.png", 540, 960, seed=4),
             "video": make_mp4(tmp / "v.mp4")}
    imap, smtp, pg = start_imap(), SmtpServer(), None
    smtp.start()
    env = {**smtp_env(smtp), **imap.env("INBOX"), "BOT_OCR_ENABLED": "false", "BOT_LOG_LEVEL": "WARNING"}
    if postgres:
        from pg_support import start_postgres

        pg = start_postgres()
        env.update(BOT_DATABASE_URL=pg.new_database(), BOT_APPEAL_KEY=KEY)
    d = await Driver.open(tmp, **env)
    try:
        final, _ = await run_appeal(d, email_answers(media), "没有")
        await d.send(tick="2026-11-24T12:00:00+08:00")
        mid = smtp.box.received[-1][1]["Message-ID"]
        engine, latencies, ticks = d.engine, [], 0
        stop = asyncio.Event()
        seen: asyncio.Queue = asyncio.Queue()

        async def tick_loop():
            nonlocal ticks
            while not stop.is_set():
                out = await engine.tick(datetime.now(timezone.utc))
                ticks += 1
                now = time.perf_counter()
                for r in out:
                    if r.text.startswith("平台回复了你的申诉"):
                        seen.put_nowait((now, r.text))
                await asyncio.sleep(0)

        loop = asyncio.create_task(tick_loop())
        t_start = time.perf_counter()
        for n in range(1, runs + 1):
            t0 = time.perf_counter()
            await asyncio.to_thread(imap.append, "INBOX", reply(mid, n))
            at, text = await asyncio.wait_for(seen.get(), timeout=60)
            assert f"第 {n} 次回复" in text, text
            latencies.append(at - t0)
            await asyncio.sleep(0.05)  # a gap: the next APPEND lands at a random point of a tick
        elapsed = time.perf_counter() - t_start
        stop.set()
        await loop
        assert engine.replies.replies_taken == runs and engine.replies.polls_failed == 0
        ms = sorted(x * 1000 for x in latencies)
        print(f"backend {engine.store.kind}, {runs} replies, imap_poll_seconds = 0")
        print(f"APPEND -> notification committed: p50 {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms, "
              f"min {ms[0]:.1f} ms")
        print(f"tick loop: {ticks} ticks in {elapsed:.2f} s ({ticks / elapsed:.0f} ticks/s, "
              f"{elapsed / ticks * 1000:.1f} ms per tick with its IMAP poll)")
    finally:
        await d.close()
        smtp.stop()
        imap.remove()
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--postgres", action="store_true", help="the store on a throwaway PostgreSQL server")
    args = ap.parse_args()
    asyncio.run(main(args.runs, args.postgres))
