#!/usr/bin/env python3
"""Time from 确认 to the SMTP server's receipt of a 13-item email-route package with a 20 MB video.

A real SMTP server (aiosmtpd) runs in process on 127.0.0.1; the bot is driven in process through
the engine (the dialog, the package writing, the send queue on a tick, aiosmtplib). Two limits:
`smtp_max_mb` 40 (sent as it is) and the default 25 (the 20 MB video, base64-encoded, does not fit:
photos and then the video are re-encoded with PyAV/libx264 first).

Usage: python bench/smtp_bench.py   (needs the test extra: aiosmtpd)
"""
from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from aiosmtpd.controller import Controller  # noqa: E402

from driver import Driver, email_answers  # noqa: E402
from media import make_jpeg, make_png  # noqa: E402


def make_video(path: Path, megabytes: float = 20, seconds: int = 10) -> Path:
    """A real MPEG-4 video of about `megabytes` (noise frames keep the bitrate honest)."""
    rng = np.random.default_rng(1)
    with av.open(str(path), mode="w", format="mp4") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        s.bit_rate = int(megabytes * 8 * 1024 * 1024 / seconds)
        base = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
        for i in range(seconds * 25):
            frame = np.roll(base, i * 7, axis=1)
            for packet in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in s.encode():
            out.mux(packet)
    return path


class Box:
    def __init__(self):
        self.at, self.size = None, 0

    async def handle_DATA(self, server, session, envelope):
        self.at, self.size = time.perf_counter(), len(envelope.content)
        return "250 OK"


async def one(tmp: Path, media: dict, max_mb: float) -> tuple[float, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Box()
    ctl = Controller(box, hostname="127.0.0.1", port=port, data_size_limit=0)
    ctl.start()
    d = await Driver.open(tmp, BOT_SMTP_HOST="127.0.0.1", BOT_SMTP_PORT=port, BOT_SMTP_SECURITY="none",
                          BOT_SMTP_MAX_MB=max_mb, BOT_OCR_ENABLED="false")
    try:
        answers = email_answers(media)
        r = await d.say("人脸与公安网照片不一致,请确保是账户本人操作")
        for text in ("是", "没有"):
            r = await d.say(text)
        while r["awaiting"] != "confirm":  # every item up to the summary
            r = (await d.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
        confirm = answers["confirm"]
        t0 = time.perf_counter()
        await d.send(**{"from": "u1", **confirm})
        await d.send(tick="2026-11-24T12:00:00+08:00")
        assert box.at is not None, "not received"
        return box.at - t0, box.size
    finally:
        await d.close()
        ctl.stop()


async def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        media = {"handheld": make_jpeg(d / "h.jpg", 3000, 4000, seed=1), "front": make_png(d / "f.png", seed=2),
                 "back": make_jpeg(d / "b.jpg", seed=3), "screenshot": make_png(d / "s.png", 1080, 1920, seed=4),
                 "video": make_video(d / "v.mp4")}
        print(f"video: {media['video'].stat().st_size / 1024 / 1024:.1f} MB; all files: "
              f"{sum(p.stat().st_size for p in media.values()) / 1024 / 1024:.1f} MB")
        for max_mb in (40, 25):
            seconds, size = await one(d / f"run{max_mb}", media, max_mb)
            print(f"smtp_max_mb {max_mb:>3}: 确认 -> received in {seconds:6.2f} s, message {size / 1024 / 1024:5.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
