"""OCR of failure-page screenshots (bot.ocr). Skipped when the OCR extra is missing.

Screenshots are rendered by tests/screenshots.py with a CJK font from Debian
(apt-get install fonts-wqy-microhei); without it the rendering tests skip.
"""
from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import unicodedata
import zlib
from pathlib import Path

import pytest

pytest.importorskip("rapidocr", reason="OCR extra not installed (pip install rapidocr onnxruntime)")
pytest.importorskip("onnxruntime", reason="OCR extra not installed (pip install onnxruntime)")

from rapidfuzz import fuzz  # noqa: E402

from bot.ocr import OcrError, OcrResult, OcrUnavailable, ScreenshotReader, ocr_available  # noqa: E402
from bot.ocr import reader as reader_mod  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import (  # noqa: E402
    FONT_HINT,
    SAMPLE_PROMPTS as PROMPTS,
    VARIANTS,
    find_cjk_font,
    render_blank_screenshot,
    render_failure_screenshot,
)

REPO = Path(__file__).resolve().parent.parent



def normalise(text: str) -> str:
    """Drop punctuation, symbols, separators and control characters (incl. newlines)."""
    return "".join(c for c in text if unicodedata.category(c)[0] not in "PSZC")


def similarity(prompt: str, text: str) -> float:
    """Character-level similarity (0..1) of the prompt to its best-matching span."""
    p, t = normalise(prompt), normalise(text)
    if p in t:
        return 1.0
    return fuzz.partial_ratio(p, t) / 100.0


@pytest.fixture(scope="session")
def cjk_font() -> Path:
    font = find_cjk_font()
    if font is None:
        pytest.skip(f"no CJK font for rendering screenshots; {FONT_HINT}")
    return font


@pytest.fixture(scope="module")
def reader() -> ScreenshotReader:
    return ScreenshotReader()


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height; its pixel data is a few bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


# ------------------------------------------------------------------ recognition

@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("prompt", PROMPTS, ids=[f"prompt{i}" for i in range(len(PROMPTS))])
async def test_failure_prompt_is_read(prompt, variant, cjk_font, reader, tmp_path):
    app = "taobao" if PROMPTS.index(prompt) % 2 else "dayu"
    shot = render_failure_screenshot(prompt, tmp_path / "shot.png", variant, app=app)
    result = await reader.read(shot)
    assert isinstance(result, OcrResult)
    assert result.text == "\n".join(result.lines)
    score = similarity(prompt, result.text)
    assert score >= 0.9, f"{variant}: similarity {score:.2f}; read {result.lines!r}"
    # Page furniture is read too, in reading order: title before prompt before buttons.
    flat = normalise(result.text)
    assert "实名认证" in flat
    assert flat.index("实名认证") < flat.index("重新认证") < flat.index("我知道了")


async def test_lines_in_reading_order(cjk_font, reader, tmp_path):
    shot = render_failure_screenshot(PROMPTS[4], tmp_path / "shot.png", "rotated")
    result = await reader.read(shot)
    # Status bar items share one line even on the tilted picture.
    assert any("14:32" in line and "87" in line for line in result.lines), result.lines
    body = [i for i, line in enumerate(result.lines) if normalise(line)[:2] in ("身份", "一致", "新提")]
    assert len(body) == 3 and body == sorted(body), result.lines


def test_reading_order_groups_and_sorts_boxes():
    def box(x, y, w=100, h=40):
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    boxes = [box(600, 12, 200), box(20, 10), box(20, 300), box(20, 100, 500)]
    txts = ["4G 87%", "14:32", "third", "second"]
    assert reader_mod._reading_order(boxes, txts) == ["14:32 4G 87%", "second", "third"]


async def test_blank_image_gives_empty_text(reader, tmp_path):
    result = await reader.read(render_blank_screenshot(tmp_path / "blank.png"))
    assert result.text == "" and result.lines == []


async def test_concurrent_reads_are_serialised_off_the_loop(cjk_font, reader, tmp_path):
    shots = [render_failure_screenshot(p, tmp_path / f"s{i}.png", "clean")
             for i, p in enumerate(PROMPTS[:3])]
    await reader.read(shots[0])  # engine loaded
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    t0 = time.perf_counter()
    results = await asyncio.gather(*(reader.read(s) for s in shots))
    elapsed = time.perf_counter() - t0
    task.cancel()
    for prompt, result in zip(PROMPTS, results):
        assert similarity(prompt, result.text) >= 0.9
    # The loop kept running while OCR worked (>= a fifth of the possible ticks).
    assert ticks >= elapsed / 0.01 / 5, (ticks, elapsed)
    # One worker: the three reads did not overlap.
    assert sum(r.seconds for r in results) <= elapsed + 0.05


# ------------------------------------------------------------------ bad input

async def test_corrupt_image_raises(reader, tmp_path):
    good = render_blank_screenshot(tmp_path / "good.png").read_bytes()
    bad = tmp_path / "truncated.png"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(OcrError, match="corrupt|not a readable"):
        await reader.read(bad)
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(4000))
    with pytest.raises(OcrError):
        await reader.read(garbage)


async def test_text_file_named_png_raises(reader, tmp_path):
    fake = tmp_path / "prompt.png"
    fake.write_text("人脸与公安网照片不一致,请确保是账户本人操作\n", encoding="utf-8")
    with pytest.raises(OcrError, match="not a readable image"):
        await reader.read(fake)


async def test_empty_and_missing_files_raise(reader, tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(OcrError, match="empty"):
        await reader.read(tmp_path / "empty.png")
    with pytest.raises(OcrError, match="not found"):
        await reader.read(tmp_path / "missing.png")


async def test_huge_image_refused_from_header(tmp_path):
    # 8000x6000 = 48 M pixels > 40 M cap: refused by our check before decoding.
    big = _png_header_only(tmp_path / "big.png", 8000, 6000)
    t0 = time.perf_counter()
    with pytest.raises(OcrError, match="too large: 8000x6000"):
        await ScreenshotReader(max_pixels=40_000_000).read(big)
    # 60000x60000 would need 10 GiB decoded; Pillow's own bomb guard fires first.
    bomb = _png_header_only(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(OcrError, match="too large"):
        await ScreenshotReader().read(bomb)
    assert time.perf_counter() - t0 < 2.0


async def test_pixel_cap_is_configurable(cjk_font, tmp_path):
    shot = render_failure_screenshot(PROMPTS[1], tmp_path / "shot.png", "clean")
    with pytest.raises(OcrError, match="too large: 1080x1920"):
        await ScreenshotReader(max_pixels=1_000_000).read(shot)


async def test_file_size_cap(tmp_path):
    shot = render_blank_screenshot(tmp_path / "blank.png")
    with pytest.raises(OcrError, match="file too large"):
        await ScreenshotReader(max_bytes=1000).read(shot)


async def test_timeout_raises_ocr_error(cjk_font, reader, tmp_path):
    shot = render_failure_screenshot(PROMPTS[4], tmp_path / "shot.png", "clean")
    await reader.read(shot)  # engine loaded, so only the read itself is timed
    with pytest.raises(OcrError, match="timed out"):
        await ScreenshotReader(timeout=0.001).read(shot)
    # The worker is still usable afterwards.
    assert similarity(PROMPTS[4], (await reader.read(shot)).text) >= 0.9


async def test_unavailable_extra_raises(monkeypatch, tmp_path):
    monkeypatch.setattr(reader_mod, "ocr_available", lambda: False)
    with pytest.raises(OcrUnavailable):
        await ScreenshotReader().read(tmp_path / "x.png")


def test_from_settings():
    from bot.settings import Settings
    r = ScreenshotReader.from_settings(Settings(ocr_max_pixels=123, ocr_timeout_seconds=4.5))
    assert (r.max_pixels, r.timeout, r.max_bytes) == (123, 4.5, 20 * 1024 * 1024)


# ------------------------------------------------------------------ lazy and offline

def _run_isolated(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (nothing imported yet), return its JSON."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_is_lazy():
    out = _run_isolated("""
        import json, sys
        import bot.ocr
        from bot.ocr import ScreenshotReader, ocr_available
        ScreenshotReader()
        available = ocr_available()
        heavy = [m for m in ("rapidocr", "onnxruntime", "numpy", "cv2") if m in sys.modules]
        print(json.dumps({"available": available, "heavy": heavy}))
    """)
    assert out == {"available": True, "heavy": []}
    assert ocr_available()


def test_reads_offline_with_bundled_models(cjk_font, tmp_path):
    shot = render_failure_screenshot(PROMPTS[0], tmp_path / "shot.png", "clean")
    out = _run_isolated(f"""
        import asyncio, json, socket
        attempts = []
        def deny(*args, **kwargs):
            attempts.append(repr(args)[:200])
            raise OSError("network disabled in this test")
        socket.socket.connect = deny
        socket.socket.connect_ex = deny
        socket.create_connection = deny
        socket.getaddrinfo = deny
        from bot.ocr import ScreenshotReader
        from bot.ocr.reader import loaded_model_paths
        import rapidocr
        result = asyncio.run(ScreenshotReader().read({str(shot)!r}))
        from rapidocr.utils import download_file
        print(json.dumps({{
            "text": result.text, "attempts": attempts,
            "models": {{k: str(v) for k, v in loaded_model_paths().items()}},
            "pkg": str(__import__("pathlib").Path(rapidocr.__file__).resolve().parent),
            "download_guarded": download_file.DownloadFile.run.__func__.__name__,
        }}))
    """)
    assert out["attempts"] == []
    assert out["download_guarded"] == "_refuse_download"
    assert sorted(out["models"]) == ["Cls", "Det", "Rec"]
    for path in out["models"].values():
        assert path.startswith(out["pkg"] + "/models/") and path.endswith(".onnx")
        assert Path(path).is_file()
    assert similarity(PROMPTS[0], out["text"]) >= 0.9
