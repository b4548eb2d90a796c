"""Bounded work per message, validation gaps, the janitor, the key check, the durable outbox."""
import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.messages import Incoming
from driver import START, Driver

ROOT = Path(__file__).resolve().parent.parent
P2 = "人脸与公安网照片不一致,请确保是账户本人操作"


async def test_a_2mb_room_message_does_not_hold_other_chats(driver):
    # measured in bench/latency_bench.py; here only a generous bound
    now = datetime.fromisoformat(START)
    for text in ("1" * 2_000_000, "1 " * 1_000_000, ("11010519491231002X 订单 " * 90_000)[:2_000_000]):
        big = Incoming(f"big{len(text)}{text[:3]}", "room1", "spammer", text, now, room=True)
        dm = Incoming(f"dm{len(text)}{text[:3]}", "u7", "u7", "扫描二维码后提示“未知客户端”", now)
        t0 = time.perf_counter()
        big_replies, dm_replies = await asyncio.gather(driver.engine.handle(big), driver.engine.handle(dm))
        assert time.perf_counter() - t0 < 0.5
        assert dm_replies and dm_replies[0].prompt_id == 18
        if "X" in text:  # ID numbers posted in a room: recalled, never echoed
            assert big_replies and "撤回" in big_replies[0].text and "11010519491231002X" not in big_replies[0].text


async def test_an_id_number_or_mobile_is_never_a_name(driver):
    await driver.say_all(P2, "是", "没有")
    r = await driver.say("我的号是11010519491231002X")
    assert r["awaiting"] == "account_name" and "11010519491231002X" not in r["text"]
    r = await driver.say("小鱼的美食日记")
    r = await driver.say("13800138000")
    assert r["awaiting"] == "real_name" and "手机号" in r["text"] and "13800138000" not in r["text"]


async def test_a_directory_as_attachment_gets_a_clear_answer(driver, tmp_path):
    await driver.say_all(P2, "是", "有")
    r = (await driver.send(**{"from": "u1", "image": str(tmp_path)}))[-1]
    assert "收不到这个文件" in r["text"] and r["awaiting"] == "failure_video"


async def test_replies_are_committed_to_the_outbox_with_reply_to(driver):
    replies = await driver.send(**{"id": "m-1", "from": "u1", "text": P2})
    unsent = driver.engine.unsent()
    assert [u.text for u in unsent] == [r["text"] for r in replies]
    assert all(u.reply_to == "m-1" and u.outbox_id for u in unsent)
    driver.engine.mark_sent(unsent)
    assert driver.engine.unsent() == []
    # a redelivery is a duplicate: no new reply, nothing new to send
    assert await driver.send(**{"id": "m-1", "from": "u1", "text": P2}) == []
    assert driver.engine.unsent() == []


async def test_reminders_are_in_the_outbox_without_reply_to(driver):
    await driver.say_all(P2, "是", "没有")
    driver.engine.mark_sent(driver.engine.unsent())
    later = (datetime.fromisoformat(START) + timedelta(minutes=45)).isoformat()
    replies = await driver.send(tick=later)
    assert replies and "还在吗" in replies[0]["text"]
    unsent = driver.engine.unsent()
    assert len(unsent) == 1 and unsent[0].reply_to is None


async def test_janitor_removes_orphans_but_not_referenced_files(driver, media):
    await driver.say_all(P2, "是", "有")
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    files = driver.engine.settings.data_dir / "files"
    kept = [p for p in files.rglob("*.enc")]
    assert len(kept) == 1
    orphan = kept[0].parent / "0123456789abcdef.enc"
    orphan.write_bytes(b"x")
    temp = driver.engine.settings.data_dir / "appeals" / ".tmp-AP-20261124-ABCDEF-x"
    temp.mkdir(parents=True)
    old = time.time() - 3600
    for p in (orphan, kept[0], temp):
        os.utime(p, (old, old))
    counts = driver.engine.janitor()
    assert counts == {"files": 1, "temp_packages": 1}
    assert kept[0].exists() and not orphan.exists() and not temp.exists()


async def test_young_orphans_are_left_to_the_turn_in_flight(driver):
    files = driver.engine.settings.data_dir / "files" / "abc"
    files.mkdir(parents=True)
    (files / "fresh.enc").write_bytes(b"x")
    assert driver.engine.janitor()["files"] == 0


async def test_delete_my_data_removes_leftovers_too(driver, media):
    await driver.say_all(P2, "是", "有")
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    user_files = next((driver.engine.settings.data_dir / "files").iterdir())
    (user_files / "leftover.enc").write_bytes(b"x")
    await driver.say("删除我的资料")
    r = await driver.say("确认删除")
    assert "已删除" in r["text"]
    assert not user_files.exists()


def _replay(data: Path, key: str, stdin: str = ""):
    env = dict(os.environ, BOT_APPEAL_KEY=key, BOT_LOG_LEVEL="INFO", BOT_OCR_ENABLED="false")
    return subprocess.run([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(data)], input=stdin,
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)


def test_a_different_key_refuses_to_start_in_one_line(tmp_path):
    from cryptography.fernet import Fernet

    data = tmp_path / "data"
    first = Fernet.generate_key().decode()
    p = _replay(data, first, '{"from": "u1", "text": "' + P2 + '"}\n')
    assert p.returncode == 0 and p.stdout
    p = _replay(data, Fernet.generate_key().decode())
    assert p.returncode == 2 and "Traceback" not in p.stderr
    line = [s for s in p.stderr.splitlines() if s.strip()]
    assert len(line) == 1 and "BOT_APPEAL_KEY" in line[0] and str(data) in line[0]
    p = _replay(data, "not-a-key")
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert _replay(data, first).returncode == 0


async def test_a_failing_turn_is_answered_once_and_keeps_the_state(tmp_path, monkeypatch):
    d = await Driver.open(tmp_path)
    try:
        await d.say_all(P2, "是", "没有")

        def boom(*a, **k):
            raise RuntimeError("boom")

        monkeypatch.setattr(d.engine.dialog, "_state_collecting", boom)
        monkeypatch.setattr(d.engine.dialog, "_take_value", boom)  # values are taken before the state's handler
        replies = await d.send(**{"id": "x1", "from": "u1", "text": "小鱼"})
        assert len(replies) == 1 and "出了点问题" in replies[0]["text"]
        assert await d.send(**{"id": "x1", "from": "u1", "text": "小鱼"}) == []
        monkeypatch.undo()
        assert d.engine.store.load("u1", "u1").data["awaiting"] == "account_name"
    finally:
        await d.close()


async def test_undecodable_bytes_get_a_clear_reply_not_an_error(driver):
    await driver.say_all(P2, "是", "没有")
    r = await driver.say("\udcff\udcfe 乱码")  # what a terminal hands over for invalid UTF-8
    assert "出了点问题" not in r["text"] and r["awaiting"] == "account_name"


async def test_a_conversation_that_cannot_be_read_gets_a_clear_answer(driver):
    await driver.say(P2)
    # a damaged row (a disk error, a hand edit): it no longer decrypts
    driver.engine.store._exec("UPDATE conversations SET data = ?", (b"not a fernet token",))
    r = await driver.say("是")
    assert "出了点问题" in r["text"]
    assert driver.engine.store.event_counts()["message"] == 2  # answered, and counted once


async def test_a_text_file_sent_as_a_picture_is_called_what_it_is(driver, tmp_path):
    fake = tmp_path / "note.jpg"
    fake.write_text("这不是图片", encoding="utf-8")
    r = (await driver.send(**{"from": "u1", "image": str(fake)}))[-1]
    assert "不是可以打开的图片" in r["text"] and "打字发给我" in r["text"]
