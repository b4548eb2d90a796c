"""Generate REAL media files for tests (not a test module).

Everything is encoded by Pillow / PyAV, so validators see genuine JPEG/PNG/MP4 data.
"""
from __future__ import annotations

import math
import random
import wave
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image, ImageDraw

# mpeg4 ships with every PyAV wheel; libx264 may not (GPL builds only).
VIDEO_CODEC = "mpeg4"


def _picture(w: int, h: int, text: str | None, seed: int) -> Image.Image:
    rnd = random.Random(seed)
    im = Image.new("RGB", (w, h), (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    draw = ImageDraw.Draw(im)
    for _ in range(12):  # some structure so each image's bytes are distinct
        x0, y0 = rnd.randrange(w), rnd.randrange(h)
        draw.rectangle(
            (x0, y0, min(w - 1, x0 + rnd.randrange(1, w)), min(h - 1, y0 + rnd.randrange(1, h))),
            fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)),
        )
    if text:
        try:
            draw.text((10, 10), text, fill=(0, 0, 0))
        except Exception:  # the default font cannot draw CJK; the text is decoration only
            draw.text((10, 10), text.encode("ascii", "replace").decode(), fill=(0, 0, 0))
    return im


def make_jpeg(path: str | Path, w: int = 800, h: int = 500, text: str | None = None, seed: int = 1) -> Path:
    p = Path(path)
    _picture(w, h, text, seed).save(p, "JPEG", quality=85)
    return p


def make_png(path: str | Path, w: int = 800, h: int = 500, text: str | None = None, seed: int = 2) -> Path:
    p = Path(path)
    _picture(w, h, text, seed).save(p, "PNG")
    return p


def make_webp(path: str | Path, w: int = 800, h: int = 500, seed: int = 3) -> Path:
    p = Path(path)
    _picture(w, h, None, seed).save(p, "WEBP")
    return p


def make_mp4(
    path: str | Path, seconds: float = 1, w: int = 320, h: int = 240, fps: int = 10, fast_start: bool = False
) -> Path:
    """A real MPEG-4 Part 2 video in an MP4 container; the `moov` index is written at the
    end, or at the front with `fast_start` (as phones and streaming encoders do)."""
    p = Path(path)
    options = {"movflags": "faststart"} if fast_start else {}
    with av.open(str(p), mode="w", format="mp4", options=options) as out:
        stream = out.add_stream(VIDEO_CODEC, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(max(1, int(seconds * fps))):
            frame = av.VideoFrame.from_image(_picture(w, h, None, seed=i))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return p


def make_audio_only(path: str | Path, seconds: float = 1.0) -> Path:
    """Audio without any video stream: `.wav` via `wave`, anything else (`.m4a`, `.mp4`)
    as AAC in an MP4 container (whose `ftyp` looks like a video to a sniffer)."""
    p = Path(path)
    rate = 16000
    n = int(rate * seconds)
    pcm = b"".join(
        int(8000 * math.sin(2 * math.pi * 440 * i / rate)).to_bytes(2, "little", signed=True) for i in range(n)
    )
    if p.suffix.lower() == ".wav":
        with wave.open(str(p), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(rate)
            wf.writeframes(pcm)
        return p
    with av.open(str(p), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        chunk = 1024
        for start in range(0, n, chunk):
            samples = min(chunk, n - start)
            frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
            frame.planes[0].update(pcm[start * 2:(start + samples) * 2])
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return p


def make_fake_jpeg(path: str | Path) -> Path:
    """Plain text with a .jpg name."""
    p = Path(path)
    p.write_text("这不是图片 just some text pretending to be a JPEG\n" * 20, encoding="utf-8")
    return p


def make_truncated_mp4(path: str | Path, keep: float = 0.5, fast_start: bool = False) -> Path:
    """A real MP4 cut short, as after an interrupted download."""
    p = Path(path)
    make_mp4(p, seconds=2, fast_start=fast_start)
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * keep)])
    return p
