"""Smoke test of the real-browser setup: Playwright drives Debian's Chromium headless."""
from __future__ import annotations

import shutil
import struct
import subprocess
import time

import pytest

from browser_support import CHROMIUM_MISSING_REASON, assert_no_running_loop, launch_browser, serve_directory

pytestmark = pytest.mark.skipif(CHROMIUM_MISSING_REASON is not None, reason=CHROMIUM_MISSING_REASON or "")

PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>实名认证</title>
<style>body { font: 32px sans-serif; margin: 24px; } span { display: inline-block; }</style>
</head><body>
<h1 id="title">实名认证</h1>
<p><span id="a">认证失败</span></p>
<p><span id="b">重新提交</span></p>
</body></html>
"""


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _has_cjk_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    return bool(out.strip())


def test_chromium_renders_local_chinese_page(tmp_path):
    assert_no_running_loop()
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(PAGE, encoding="utf-8")
    shot = tmp_path / "page.png"

    with serve_directory(site) as url, sync_playwright() as pw:
        started = time.monotonic()
        browser = launch_browser(pw)
        launch_seconds = time.monotonic() - started
        try:
            page = browser.new_page(viewport={"width": 480, "height": 320})
            page.goto(url + "index.html")
            assert page.title() == "实名认证"
            assert page.inner_text("#title") == "实名认证"
            page.screenshot(path=str(shot))
            glyphs_a = page.locator("#a").screenshot()
            glyphs_b = page.locator("#b").screenshot()
        finally:
            browser.close()

    print(f"chromium launch: {launch_seconds:.2f}s")
    data = shot.read_bytes()
    assert _png_size(data) == (480, 320)
    assert len(data) > 2_000, f"screenshot suspiciously small: {len(data)} bytes"

    # Missing CJK glyphs render as identical empty boxes, so two different strings
    # of the same length would give the same picture.
    if _has_cjk_font():
        assert glyphs_a != glyphs_b, "Chinese text rendered as boxes: CJK font not used"
