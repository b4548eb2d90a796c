"""Admin commands and hot reload of the knowledge base."""
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import KNOWLEDGE, ROOT
from driver import Driver, online_answers, run_appeal

NEW_ENTRY = ("  - id: 19\n    group: qr_blank\n    text: 二维码已过期,请刷新页面重新获取\n"
             "    keywords: [二维码已过期]\n")


@pytest.fixture
def kdir(tmp_path):
    d = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, d)
    return d


@pytest.fixture
async def admin_driver(tmp_path, kdir):
    d = await Driver.open(tmp_path, BOT_ADMINS="boss,ops", BOT_KNOWLEDGE_DIR=str(kdir))
    yield d
    await d.close()


@pytest.mark.parametrize("command", ["#reload", "/reload", "重载知识库", "#kb", "#stats", "#unmatched",
                                     "#appeals", "#room auto"])
async def test_non_admins_are_refused_and_logged(admin_driver, command, caplog):
    caplog.set_level("INFO")
    r = await admin_driver.say(command, user="stranger")
    assert r["text"] == "抱歉,这个指令只有管理员可以使用。"
    r = (await admin_driver.send(room="r1", **{"from": "stranger"}, mention=True, text=command))[0]
    assert r["text"] == "抱歉,这个指令只有管理员可以使用。"
    assert admin_driver.engine.store.room_mode("r1") is None
    assert "refused admin command" in caplog.text


async def test_reload_adds_an_entry_that_matches_at_once(admin_driver, kdir):
    before = admin_driver.engine.snapshot.kb.version
    r = await admin_driver.say("二维码已过期,请刷新页面重新获取", user="u9")
    assert r["prompt_id"] != 19
    with open(kdir / "prompts.yaml", "a", encoding="utf-8") as fh:
        fh.write(NEW_ENTRY)
    r = await admin_driver.say("#reload", user="boss")
    assert "新增 1 条(19)" in r["text"] and before in r["text"]
    r = await admin_driver.say("二维码已过期,请刷新页面重新获取", user="u9")
    assert r["prompt_id"] == 19 and "刷新页面后重试" in r["text"]
    kb = await admin_driver.say("#kb", user="boss")
    assert "19 条提示语" in kb["text"] and "boss" in kb["text"]


@pytest.mark.parametrize("old,new,reason", [
    ("  - id: 2\n", "  - id: 1\n", "duplicate prompt id 1"),
    ("version: \"2026", "version: [\"2026", "YAML error"),
    ("  unknown_client:\n    title: 扫码提示“未知客户端”(提示语 18)\n    appeal: false\n    remedy: |-\n"
     "      实名认证必须使用淘宝APP进行认证,如使用其他APP会出现此情况。\n",
     "  unknown_client:\n    title: 扫码提示“未知客户端”(提示语 18)\n    appeal: false\n", "remedy"),
])
async def test_broken_reload_keeps_the_old_base(admin_driver, kdir, old, new, reason):
    old_version = admin_driver.engine.snapshot.kb.version
    f = kdir / "prompts.yaml"
    f.write_text(f.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    r = await admin_driver.say("#reload", user="ops")
    assert "重载失败" in r["text"] and "prompts.yaml" in r["text"] and "行" in r["text"] and reason in r["text"]
    assert admin_driver.engine.snapshot.kb.version == old_version
    r = await admin_driver.say("扫描二维码后提示“未知客户端”", user="u9")
    assert r["prompt_id"] == 18 and "淘宝APP" in r["text"]


async def test_reload_during_a_burst_loses_nothing(admin_driver, kdir):
    with open(kdir / "prompts.yaml", "a", encoding="utf-8") as fh:
        fh.write(NEW_ENTRY)
    burst = [admin_driver.send(**{"id": f"m{i}", "from": f"user{i}", "text": "认证信息已超过入驻上限"})
             for i in range(60)]
    reload_ = admin_driver.send(**{"from": "boss", "text": "#reload"})
    results = await asyncio.gather(*burst[:30], reload_, *burst[30:])
    answers = [r for r in results if r and r[0]["to"] != "boss"]
    assert len(answers) == 60 and all(r[0]["prompt_id"] == 13 for r in answers)
    assert "新增 1 条" in results[30][0]["text"]
    stats = await admin_driver.say("#stats", user="boss")
    assert "消息 61 条" in stats["text"]  # the 60 messages and the #reload


async def test_stats_unmatched_and_appeals(admin_driver, media):
    for text in ["怎么开通直播", "怎么开通直播", "我的号11010519491231002X怎么提现"]:
        await admin_driver.say(text, user="u5")
    await admin_driver.say("认证信息已超过入驻上限", user="u5")
    await run_appeal(admin_driver, online_answers(media), "有", user="u6")
    stats = (await admin_driver.say("#stats", user="boss"))["text"]
    assert "#13:1" in stats and "完成 1" in stats and "开始 1" in stats
    assert "【申诉漏斗 近 7 天】处理办法 2 → 提出申诉 1 → 同意 1 → 线上反馈 1 / 邮箱 0 → 确认 1" in stats
    unmatched = (await admin_driver.say("#unmatched", user="boss"))["text"]
    assert "[空闲] 怎么开通直播 ×2" in unmatched and "11010519491231002X" not in unmatched
    appeals = (await admin_driver.say("#appeals", user="boss"))["text"]
    assert "线上反馈" in appeals and "AP-" in appeals


async def test_unmatched_lists_what_was_not_understood_while_waiting(admin_driver):
    from bot.store import Writes

    assert "没有" in (await admin_driver.say("#unmatched", user="boss"))["text"]
    for _ in range(3):
        await admin_driver.say("怎么开通直播", user="u5")
    w, now = Writes(), admin_driver.clock
    for _ in range(2):
        w.record_not_understood("我叫啥你猜", "collecting", "real_name", now)
    w.record_not_understood("嗯嗯那个呢", "appeal_offer", "appeal_offer", now)
    w.record_not_understood("打我电话 13812345678", "collecting", "contact", now)
    admin_driver.engine.store.commit_turn(None, None, now, w, [])
    text = (await admin_driver.say("#unmatched", user="boss"))["text"]
    lines = text.splitlines()[1:]
    assert lines[0] == "[空闲] 怎么开通直播 ×3"
    assert lines[1] == "[等待 姓名] 我叫啥你猜 ×2"  # the awaited item's label
    assert "[等待 appeal_offer] 嗯嗯那个呢 ×1" in lines  # not an item: the state's name
    assert "[等待 联系方式] 打我电话 138****5678 ×1" in lines and "13812345678" not in text


async def test_room_mode_command_in_a_room(admin_driver):
    r = (await admin_driver.send(room="r7", **{"from": "boss"}, mention=True, text="#room auto"))[0]
    assert "auto" in r["text"] and r["mention"]
    assert admin_driver.engine.room_mode("r7") == "auto"
    r = await admin_driver.send(room="r7", **{"from": "u1"}, text="认证信息已超过入驻上限")
    assert r and r[0]["prompt_id"] == 13
    # unmentioned admin commands in a room are ignored like any chatter
    assert await admin_driver.send(room="r7", **{"from": "boss"}, text="#room off") == []
    assert admin_driver.engine.room_mode("r7") == "auto"


def test_sighup_reloads_a_running_bot(tmp_path, kdir):
    env = {**os.environ, "BOT_KEY_FILE": str(tmp_path / "k"), "BOT_KNOWLEDGE_DIR": str(kdir)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(tmp_path / "d")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, env=env)
    try:
        def ask(text):
            proc.stdin.write(json.dumps({"from": "u1", "text": text}, ensure_ascii=False) + "\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        assert ask("二维码已过期,请刷新页面重新获取")["prompt_id"] != 19
        with open(kdir / "prompts.yaml", "a", encoding="utf-8") as fh:
            fh.write(NEW_ENTRY)
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while True:
            r = ask("二维码已过期,请刷新页面重新获取")
            if r["prompt_id"] == 19 or time.time() > deadline:
                break
            time.sleep(0.2)
        assert r["prompt_id"] == 19
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)
