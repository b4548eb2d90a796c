"""Conversation review in a real browser (Playwright + Debian's Chromium) against a real `python -m
bot web` process, with a `python -m bot replay -` process on the same data dir as the running bot: a
creator's slang yes at the appeal offer is misread (asked again); the operator finds the
conversation by the misread filter and labels the message; the bot reloads, and the same message
from another creator in the same state is understood; `python -m bot kb test` passes with the case."""
import json
import queue
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest

from bot.matching.cases import load_cases
from browser_support import CHROMIUM_MISSING_REASON, launch_browser
from test_web_browser import ROOT, bot_env, live_console
from web_support import PASSWORD, build_world

pytestmark = pytest.mark.skipif(CHROMIUM_MISSING_REASON is not None, reason=CHROMIUM_MISSING_REASON or "")
PROMPT = "刷脸之后提示脸和公安网的照片不一致"
SLANG_YES = "阔以"


def test_operator_labels_a_misread_turn_and_the_bot_learns_it(tmp_path, media):
    world = build_world(tmp_path / "world", media)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with live_console(world) as (base, bot, lines):
        _review(world, shots, base, bot, lines)
    for p in shots.iterdir():
        assert p.stat().st_size > 5000, p


def _review(world, shots, base, bot, lines) -> None:
    from playwright.sync_api import sync_playwright

    def say(user: str, text: str) -> dict:
        """One DM to the running bot; its last reply to that user."""
        bot.stdin.write(json.dumps({"from": user, "text": text}, ensure_ascii=False) + "\n")
        bot.stdin.flush()
        got, deadline = None, time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                r = lines.get(timeout=1.5 if got else 30)
            except queue.Empty:
                if got:
                    return got
                continue
            if r["chat"] == user:
                got = r
        assert got, f"no reply to {text!r}"
        return got

    assert say("u5", PROMPT)["state"] == "appeal_offer"
    misread = say("u5", SLANG_YES)
    assert misread["state"] == "appeal_offer" and "没太明白" in misread["text"]  # asked again
    with sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 412, "height": 900})
        page.goto(base + "/login")
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/appeals")

        page.click("text=对话与未识别")
        page.wait_for_url(base + "/conversations")
        page.check("input[name=misread]")
        page.click("text=筛选")
        page.wait_for_url("**/conversations?misread=1**")
        page.screenshot(path=str(shots / "1-conversations.png"), full_page=True)
        links = page.locator("table.list a")
        assert links.count() >= 1
        for i in range(links.count()):  # the misread conversation that holds the slang yes
            page.goto(base + "/conversations?misread=1")
            page.locator("table.list a").nth(i).click()
            page.wait_for_load_state()
            if page.locator("li.turn.misread", has_text=SLANG_YES).count():
                break
        turn = page.locator("li.turn.misread", has_text=SLANG_YES).first
        assert "重复提问" in turn.inner_text() and "问是否申诉" in turn.inner_text()
        page.screenshot(path=str(shots / "2-conversation.png"), full_page=True)
        turn.locator("select[name=label]").select_option("intent:consent")
        turn.locator("text=保存标注").click()
        page.wait_for_selector("text=已保存:intent:consent")
        assert page.locator("li.turn", has_text=SLANG_YES).first.locator("text=已标注:intent:consent").count()
        page.screenshot(path=str(shots / "3-labelled.png"), full_page=True)
        browser.close()

    # the running bot reloads on its next tick (the console bumped the knowledge generation)
    bot.stdin.write(json.dumps({"tick": datetime.now(timezone.utc).isoformat()}) + "\n")
    bot.stdin.flush()
    time.sleep(2)
    assert say("u6", PROMPT)["state"] == "appeal_offer"
    understood = say("u6", SLANG_YES)
    assert understood["state"] == "route", understood  # the same message in the same state: a yes now
    test = subprocess.run([sys.executable, "-m", "bot", "kb", "test", str(world["kdir"])], capture_output=True,
                          text=True, cwd=ROOT, env=bot_env(world), timeout=120)
    saved = load_cases(world["kdir"])
    assert saved[-1].text == SLANG_YES and saved[-1].label == "intent:consent" and saved[-1].state == "appeal_offer"
    assert test.returncode == 0 and f"ok: {len(saved)} cases" in test.stdout, test.stdout + test.stderr
