"""The web console in a real browser: Playwright driving Debian's Chromium against a real
`python -m bot web` process, with a `python -m bot replay -` process on the same data dir standing in
for the running bot. Screenshots of the main pages are saved under the test's output dir."""
import contextlib
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from browser_support import CHROMIUM_MISSING_REASON, launch_browser
from session_server import free_port
from web_support import PASSWORD, UNMATCHED, build_world

pytestmark = pytest.mark.skipif(CHROMIUM_MISSING_REASON is not None, reason=CHROMIUM_MISSING_REASON or "")
ROOT = Path(__file__).resolve().parent.parent


def bot_env(world) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT_")}
    env.update(world["env"], BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false")
    return env


def start(args, world, **kw):
    return subprocess.Popen([sys.executable, "-m", "bot", *args, "--data-dir", str(world["data_dir"])],
                            env=bot_env(world), cwd=ROOT, text=True, **kw)


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


@contextlib.contextmanager
def live_console(world):
    """A `python -m bot web` process and a `python -m bot replay -` bot on the world's data dir:
    yields (the console's base URL, the bot process, a queue of its JSON reply lines); both stopped
    after."""
    port = free_port()
    web = start(["web", "--port", str(port)], world, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    bot = start(["replay", "-"], world, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(x)) for x in bot.stdout if x.startswith("{")],
                     daemon=True).start()
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}", bot, lines
    finally:
        bot.stdin.close()
        bot.wait(timeout=30)
        web.terminate()
        web.wait(timeout=30)


def test_operator_day_in_a_browser(tmp_path, media):
    from playwright.sync_api import sync_playwright

    world = build_world(tmp_path / "world", media)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with live_console(world) as (base, bot, lines):
        with sync_playwright() as pw:
            browser = launch_browser(pw)
            page = browser.new_page(viewport={"width": 412, "height": 900})  # a phone's width
            page.goto(base + "/appeals")
            assert page.url.endswith("/login")
            page.screenshot(path=str(shots / "1-login.png"), full_page=True)
            page.fill("input[name=username]", "ops")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/appeals")
            assert world["appeal_id"] in page.content() and "11010519491231002X" not in page.content()
            page.screenshot(path=str(shots / "2-appeals.png"), full_page=True)

            page.click(f"text={world['appeal_id']}")
            page.wait_for_url(base + f"/appeals/{world['appeal_id']}")
            img = page.locator("img[alt^='单独身份证正面照片']")
            img.scroll_into_view_if_needed()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=img.element_handle())
            width = img.evaluate("img => img.naturalWidth")
            from PIL import Image

            with Image.open(media["front"]) as original:
                assert width == original.width  # the photo itself, decrypted and streamed
            page.screenshot(path=str(shots / "3-appeal.png"), full_page=True)

            page.select_option("select[name=status]", "resolved")
            page.fill("textarea[name=note]", "审核通过,请重新认证")
            page.click("text=保存并通知创作者")
            page.wait_for_selector("text=web:ops")
            deadline = time.monotonic() + 15
            told = None
            while time.monotonic() < deadline and told is None:
                try:
                    r = lines.get(timeout=1)
                except queue.Empty:
                    continue
                if r["chat"] == "u1" and "审核通过,请重新认证" in r["text"]:
                    told = r
            assert told and world["appeal_id"] in told["text"] and told["reply_to"] is None

            page.goto(base + "/unmatched")
            item = page.locator("li.card", has_text=UNMATCHED)
            item.locator("select[name=prompt_id]").select_option("15")
            item.locator("button[value=prompt]").click()
            page.wait_for_selector("text=已加入提示语 15")
            page.screenshot(path=str(shots / "4-unmatched.png"), full_page=True)
            match = subprocess.run([sys.executable, "-m", "bot", "match"], input=UNMATCHED + "\n", text=True,
                                   capture_output=True, env=bot_env(world), cwd=ROOT, timeout=60)
            assert json.loads(match.stdout)["id"] == 15

            for name in ("stats", "kb", "audit"):
                page.goto(f"{base}/{name}")
                page.screenshot(path=str(shots / f"5-{name}.png"), full_page=True)
            assert "status:resolved" in page.content() and "reveal" not in page.content()

            page.click("text=退出")
            page.wait_for_url(base + "/login")
            page.goto(base + "/appeals")
            assert page.url.endswith("/login")
            browser.close()
    print(f"screenshots: {shots}")
    for p in shots.iterdir():
        assert p.stat().st_size > 5000, p
