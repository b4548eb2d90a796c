"""Submitting the appeal: a real SMTP server (aiosmtpd, in process, 127.0.0.1), the send queue
driven by ticks, statuses, who is told what, the operator CLI, retention."""
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path

import av
import pytest
from aiosmtpd.controller import Controller
from PIL import Image

from driver import START, Driver, email_answers, online_answers, run_appeal
from session_server import free_port

ROOT = Path(__file__).resolve().parent.parent
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
MAILBOX = "appeals@example.invalid"


class Mailbox:
    """aiosmtpd handler: keeps what it accepts; `refuse` answers DATA with that reply instead."""

    def __init__(self):
        self.received: list = []
        self.refuse: str | None = None

    async def handle_DATA(self, server, session, envelope):
        if self.refuse:
            return self.refuse
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content or envelope.content)
        self.received.append((envelope.rcpt_tos, msg))
        return "250 OK"


class SmtpServer:
    def __init__(self):
        self.port = free_port()
        self.box = Mailbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port, data_size_limit=0)
        self.controller.start()

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp():
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


def smtp_env(server, **extra):
    return {"BOT_SMTP_HOST": "127.0.0.1", "BOT_SMTP_PORT": str(server.port), "BOT_SMTP_SECURITY": "none",
            "BOT_SMTP_FROM": "bot@example.invalid", "BOT_APPEAL_EMAIL": MAILBOX, "BOT_ADMINS": "boss", **extra}


def at(minutes: float) -> str:
    return (datetime.fromisoformat(START) + timedelta(minutes=minutes)).isoformat()


async def finish_email_appeal(driver, media):
    final, _ = await run_appeal(driver, email_answers(media), "没有")
    assert final["appeal_id"]
    return final


async def test_confirm_sends_the_package_once(tmp_path, media, smtp):
    d = await Driver.open(tmp_path, **smtp_env(smtp))
    try:
        final = await finish_email_appeal(d, media)
        appeal_id = final["appeal_id"]
        assert MAILBOX in final["text"] and "30 天" in final["text"]
        assert d.engine.store.appeal(appeal_id)["status"] == "queued"
        told = await d.send(tick=at(60))
        rcpt, msg = smtp.box.received[0]
        assert len(smtp.box.received) == 1 and rcpt == [MAILBOX]
        assert msg["To"] == MAILBOX and msg["Subject"] == "个人实名认证失败材料-小鱼的美食日记"
        assert msg["Message-ID"] == f"<{appeal_id}@dayu-bot.invalid>" and msg["X-Unsent"] is None
        body = msg.get_body(("plain",)).get_content()
        labels = [m.label for m in d.engine.snapshot.kb.routes["email"].materials]
        positions = [body.index(label) for label in labels]
        assert positions == sorted(positions) and len(labels) == 13
        got = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
        for slot, key in (("id_handheld_photo", "handheld"), ("id_front_photo", "front"), ("id_back_photo", "back"),
                          ("taobao_screenshot", "screenshot"), ("failure_video", "video")):
            name = next(n for n in got if n.startswith(slot))
            assert got[name] == media[key].read_bytes(), slot  # byte-identical under the limit
        a = d.engine.store.appeal(appeal_id)
        assert a["status"] == "sent" and a["message_id"] == f"<{appeal_id}@dayu-bot.invalid>"
        assert [t["text"] for t in told if t["chat"] == "u1"] and "已发送" in told[0]["text"]
        assert [h["status"] for h in d.engine.store.appeal_history(appeal_id)] == ["ready", "queued", "sent"]
        await d.send(tick=at(120))
        assert len(smtp.box.received) == 1  # never twice
        r = await d.say("我的申诉怎么样了")
        assert appeal_id in r["text"] and "已发送" in r["text"]
    finally:
        await d.close()


async def test_server_down_then_up_is_sent_once_after_retries(tmp_path, media, smtp):
    smtp.stop()
    d = await Driver.open(tmp_path, **smtp_env(smtp))
    try:
        final = await finish_email_appeal(d, media)
        appeal_id = final["appeal_id"]
        await d.send(tick=at(31))  # refused: retry in 1 min
        assert d.engine.store.appeal(appeal_id)["status"] == "queued"
        assert d.engine.store.pending_sends() == 1
        await d.send(tick=at(31.5))  # not due yet
        smtp.start()
        await d.send(tick=at(31.6))
        assert smtp.box.received == []  # backoff respected
        await d.send(tick=at(33))
        assert len(smtp.box.received) == 1
        await d.send(tick=at(40))
        assert len(smtp.box.received) == 1 and d.engine.store.appeal(appeal_id)["status"] == "sent"
    finally:
        await d.close()


async def test_a_5xx_marks_failed_and_tells_creator_and_admins(tmp_path, media, smtp):
    smtp.box.refuse = "550 5.7.1 mailbox unavailable"
    d = await Driver.open(tmp_path, **smtp_env(smtp))
    try:
        final = await finish_email_appeal(d, media)
        told = await d.send(tick=at(31))
        a = d.engine.store.appeal(final["appeal_id"])
        assert a["status"] == "failed" and "550" in a["note"]
        creator = [t for t in told if t["chat"] == "u1"]
        admins = [t for t in told if t["chat"] == "boss"]
        assert len(creator) == 1 and "在线人工客服" in creator[0]["text"] and "\n" not in creator[0]["text"]
        assert len(admins) == 1 and final["appeal_id"] in admins[0]["text"] and "550" in admins[0]["text"]
        assert d.engine.store.pending_sends() == 0
    finally:
        await d.close()


def _decodable_image(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return max(img.size) <= 2000


def _decodable_video(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as c:
        return sum(1 for _ in c.decode(video=0))


async def test_over_the_limit_the_photos_then_the_video_are_reencoded(tmp_path, media, smtp):
    from media import make_jpeg, make_mp4

    big = {**media, "handheld": make_jpeg(tmp_path / "big.jpg", 3000, 4000, seed=3),
           "video": make_mp4(tmp_path / "long.mp4", seconds=6, w=640, h=480, fps=15)}
    raw = sum(p.stat().st_size for k, p in big.items() if k in ("handheld", "front", "back", "screenshot", "video"))
    limit_mb = raw * 0.7 / 1024 / 1024  # below the package as it is
    d = await Driver.open(tmp_path, **smtp_env(smtp, BOT_SMTP_MAX_MB=f"{limit_mb:.3f}"))
    try:
        await finish_email_appeal(d, big)
        await d.send(tick=at(31))
        (_, msg), = smtp.box.received
        assert len(msg.as_bytes()) <= limit_mb * 1024 * 1024
        parts = {p.get_filename(): p.get_content() for p in msg.iter_attachments()}
        assert all(_decodable_image(v) for n, v in parts.items() if n.endswith((".jpg", ".png")))
        video = next(v for n, v in parts.items() if n.startswith("failure_video"))
        assert video != big["video"].read_bytes() and _decodable_video(video) > 0
    finally:
        await d.close()


async def test_too_large_even_reencoded_stays_ready_for_the_operator(tmp_path, media, smtp):
    d = await Driver.open(tmp_path, **smtp_env(smtp, BOT_SMTP_MAX_MB="0.01"))
    try:
        final = await finish_email_appeal(d, media)
        told = await d.send(tick=at(31))
        assert smtp.box.received == []
        assert d.engine.store.appeal(final["appeal_id"])["status"] == "ready"
        assert any(t["chat"] == "u1" and "在线人工客服" in t["text"] for t in told)
    finally:
        await d.close()


async def test_without_smtp_the_operator_submits_and_the_online_route_says_where(tmp_path, media):
    d = await Driver.open(tmp_path)
    try:
        final = await finish_email_appeal(d, media)
        assert "社群管理员" in final["text"] and d.engine.store.appeal(final["appeal_id"])["status"] == "ready"
        assert d.engine.store.pending_sends() == 0
        final, _ = await run_appeal(d, online_answers(media), "有", user="u2")
        assert "线上反馈" in final["text"] and "手持身份证正面照片" in final["text"]
    finally:
        await d.close()


async def test_operator_statuses_reach_the_creator_and_are_recorded(tmp_path, media):
    d = await Driver.open(tmp_path, BOT_ADMINS="boss")
    try:
        final = await finish_email_appeal(d, media)
        appeal_id = final["appeal_id"]
        r = await d.say(f"#appeal {appeal_id} 需补充 请重拍手持照片", user="boss")
        assert "需补充" in r["text"]
        notes = [u for u in d.engine.unsent() if u.chat == "u1" and u.reply_to is None]
        assert len(notes) == 1 and "补充" in notes[0].text and "请重拍手持照片" in notes[0].text
        r = await d.say(f"#appeal {appeal_id} 已通过", user="u1")  # not an admin
        assert "管理员" in r["text"] and d.engine.store.appeal(appeal_id)["status"] == "need_more"
        d.engine.change_appeal_status(appeal_id, "resolved", by="test")
        history = d.engine.store.appeal_history(appeal_id)
        assert [(h["status"], h["by"]) for h in history][-2:] == [("need_more", "admin:boss"), ("resolved", "test")]
        assert history[-2]["note"] == "请重拍手持照片"
        # retention: the package goes N days after resolved
        pkg = d.engine.settings.data_dir / "appeals" / appeal_id
        assert pkg.exists()
        assert d.engine.expire_packages(datetime.fromisoformat(START) + timedelta(days=29)) == 0
        assert d.engine.expire_packages(datetime.now().astimezone() + timedelta(days=31)) == 1
        assert not pkg.exists() and d.engine.store.appeal(appeal_id)["package_deleted"] == 1
    finally:
        await d.close()


def _bot(data, *args, env=None, stdin=None, **kw):
    e = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false", **(env or {}))
    return subprocess.run([sys.executable, "-m", "bot", *args, "--data-dir", str(data)], input=stdin,
                          capture_output=True, text=True, env=e, cwd=ROOT, timeout=180, **kw)


def _events(media, user="u1"):
    steps = [{"text": "人脸与公安网照片不一致,请确保是账户本人操作"}, {"text": "是"}, {"text": "有"},
             {"video": str(media["video"])}, {"image": str(media["handheld"])}, {"image": str(media["front"])},
             {"image": str(media["back"])}, {"text": "确认"}]
    return "".join(json.dumps({"from": user, **s}, ensure_ascii=False) + "\n" for s in steps)


def test_cli_status_in_another_process_reaches_a_running_replay(tmp_path, media):
    data = tmp_path / "data"
    p = _bot(data, "replay", "-", stdin=_events(media))
    appeal_id = json.loads(p.stdout.splitlines()[-1])["appeal_id"]
    assert appeal_id, p.stdout
    env = dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false")
    live = subprocess.Popen([sys.executable, "-m", "bot", "replay", "-", "--data-dir", str(data)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        time.sleep(2)  # started and idle
        cli = _bot(data, "appeals", "status", appeal_id, "reviewing", "--note", "已转交审核")
        assert cli.returncode == 0, cli.stderr
        line = live.stdout.readline()  # delivered by the running bot, no event needed
        r = json.loads(line)
        assert r["chat"] == "u1" and r["reply_to"] is None and appeal_id in r["text"] and "已转交审核" in r["text"]
    finally:
        live.stdin.close()
        live.wait(timeout=60)
    listed = _bot(data, "appeals", "list", "--status", "reviewing", "--json")
    rows = json.loads(listed.stdout)
    assert [r["appeal_id"] for r in rows] == [appeal_id] and rows[0]["status"] == "reviewing"
    table = _bot(data, "appeals", "list").stdout.splitlines()
    assert table[0].split()[:4] == ["appeal_id", "route", "prompt", "status"] and "reviewing" in table[1]
    assert "11010519491231002X" not in listed.stdout


def test_kill_between_queueing_and_sending_sends_once_after_restart(tmp_path, media, smtp):
    data = tmp_path / "data"
    env = smtp_env(smtp)
    # the email route: answers for every item
    answers = [{"text": "人脸与公安网照片不一致,请确保是账户本人操作"}, {"text": "是"}, {"text": "没有"},
               {"text": "小鱼的美食日记"}, {"text": "欧阳娜娜"}, {"text": "11010519491231002X"},
               {"image": str(media["handheld"])}, {"image": str(media["front"])}, {"image": str(media["back"])},
               {"text": "对"}, {"image": str(media["screenshot"])}, {"text": "iPhone 13"}, {"text": "10.38.0"},
               {"video": str(media["video"])}, {"text": "否"}, {"text": "13800138000"}, {"text": "确认"}]
    events = "".join(json.dumps({"id": f"m{i}", "from": "u1", **a}, ensure_ascii=False) + "\n"
                     for i, a in enumerate(answers))
    crash = subprocess.run([sys.executable, str(ROOT / "tests" / "crashing_replay.py"), "--data-dir", str(data)],
                           input=events, capture_output=True, text=True, cwd=ROOT, timeout=180,
                           env=dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false",
                                    PYTHONPATH=str(ROOT), CRASH_AT="after_commit:17", **env))
    assert crash.returncode == 70  # killed right after 确认 was committed (queued), before any send
    assert smtp.box.received == []
    again = _bot(data, "replay", "-", env=env, stdin=json.dumps({"id": "m16", "from": "u1", "text": "确认"}) + "\n")
    assert again.returncode == 0, again.stderr
    out = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(smtp.box.received) == 1  # sent at the restart's drain, once
    assert any("已发送" in r["text"] for r in out)
    assert sum(1 for r in out if r.get("reply_to") == "m16") == 1  # the 确认 reply, printed once


def test_a_crash_after_the_server_accepted_resends_with_the_same_message_id(tmp_path, media, smtp):
    data = tmp_path / "data"
    env = smtp_env(smtp)
    events = _events(media).replace('"text": "有"', '"text": "没有"')
    answers = [{"text": "小鱼的美食日记"}, {"text": "欧阳娜娜"}, {"text": "11010519491231002X"},
               {"image": str(media["handheld"])}, {"image": str(media["front"])}, {"image": str(media["back"])},
               {"text": "对"}, {"image": str(media["screenshot"])}, {"text": "iPhone 13"}, {"text": "10.38.0"},
               {"video": str(media["video"])}, {"text": "否"}, {"text": "13800138000"}, {"text": "确认"}]
    first = events.splitlines()[:3]
    script = "\n".join(first) + "\n" + "".join(json.dumps({"from": "u1", **a}, ensure_ascii=False) + "\n" for a in answers)
    crash = subprocess.run([sys.executable, str(ROOT / "tests" / "crashing_replay.py"), "--data-dir", str(data)],
                           input=script, capture_output=True, text=True, cwd=ROOT, timeout=180,
                           env=dict(os.environ, BOT_APPEAL_KEY=KEY, BOT_LOG_LEVEL="WARNING", BOT_OCR_ENABLED="false",
                                    PYTHONPATH=str(ROOT), CRASH_AT="after_smtp:1", **env))
    assert crash.returncode == 70 and len(smtp.box.received) == 1
    again = _bot(data, "replay", "-", env=env, stdin="")
    assert again.returncode == 0, again.stderr
    ids = {m["Message-ID"] for _, m in smtp.box.received}
    assert len(smtp.box.received) == 2 and len(ids) == 1  # at-least-once, recognisable by Message-ID
