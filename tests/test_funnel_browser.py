"""The funnel on /stats in a real browser (Playwright + Debian's Chromium) against a real `python -m
bot web` process on the scripted conversations' data dir: at a phone's width and a desktop's,
screenshots saved (FUNNEL_SHOTS=DIR also copies them there), the drawings' text measured."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser_support import CHROMIUM_MISSING_REASON, launch_browser
from funnel_script import build_world
from test_web_browser import free_port, wait_port
from web_support import PASSWORD

pytestmark = pytest.mark.skipif(CHROMIUM_MISSING_REASON is not None, reason=CHROMIUM_MISSING_REASON or "")
ROOT = Path(__file__).resolve().parent.parent


def test_the_funnel_in_a_browser_at_a_phones_width_and_a_desktops(tmp_path, media):
    from playwright.sync_api import sync_playwright

    world = build_world(tmp_path / "world", media)
    s = world["settings"]
    shots = tmp_path / "screenshots"
    shots.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_")}
    env.update(BOT_KEY_FILE=str(s.key_file), BOT_LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    web = subprocess.Popen([sys.executable, "-m", "bot", "web", "--port", str(port), "--data-dir", str(s.data_dir)],
                           env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_port(port)
        with sync_playwright() as pw:
            browser = launch_browser(pw)
            for name, viewport in (("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 900})):
                page = browser.new_page(viewport=viewport)
                page.goto(base + "/login")
                page.fill("input[name=username]", "ops")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(base + "/appeals")
                page.goto(base + "/stats?since=2026-11-24&until=2026-11-24")
                funnel = page.locator("#funnel")
                assert "8 次尝试" in funnel.inner_text()
                steps = funnel.locator("svg.funnel").first
                assert "确认提交 2" in steps.text_content() and "选择途径 5" in steps.text_content()
                # readable: the drawings' text is at least 11 CSS px high, and nothing is wider than the screen
                heights = page.eval_on_selector_all(
                    "#funnel svg.funnel text", "ts => ts.map(t => t.getBoundingClientRect().height)")
                assert heights and min(heights) >= 12, (name, min(heights))
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 0, (name, overflow)
                # no text of a row runs into the other one (label left, numbers right)
                clashes = page.evaluate("""() => [...document.querySelectorAll('#funnel svg.funnel')].flatMap(svg => {
                    const ts = [...svg.querySelectorAll('text')].map(t => [t, t.getBoundingClientRect()]);
                    return ts.flatMap(([a, ra], i) => ts.slice(i + 1).filter(([b, rb]) =>
                        ra.left < rb.right - 1 && rb.left < ra.right - 1 && ra.top < rb.bottom - 1 && rb.top < ra.bottom - 1)
                        .map(([b]) => a.textContent + ' / ' + b.textContent));
                })""")
                assert clashes == [], (name, clashes)
                page.screenshot(path=str(shots / f"funnel-{name}.png"), full_page=True)
                funnel.screenshot(path=str(shots / f"funnel-{name}-card.png"))
                page.close()
            browser.close()
    finally:
        web.terminate()
        web.wait(timeout=30)
    for p in shots.iterdir():
        assert p.stat().st_size > 5000, p
    if os.environ.get("FUNNEL_SHOTS"):
        shutil.copytree(shots, os.environ["FUNNEL_SHOTS"], dirs_exist_ok=True)
    print(f"screenshots: {shots}")
