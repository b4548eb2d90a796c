"""WeChat end to end: the real bot (`python -m bot run`) against the shipped gateway
(deploy/gateway/gateway.mjs: wechaty-puppet-service, WECHATY_PUPPET=wechaty-puppet-mock), over gRPC on
loopback.

The tests of this module share one gateway and one bot data dir and run in file order.
"""
from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]

if TYPE_CHECKING:  # the harness lives in this directory's conftest.py (fixtures only at run time)
    from .conftest import Bot, Gateway

pytestmark = pytest.mark.e2e

BOT_NAME = "DayuBot"  # the bot account's name in gateway.mjs

PROMPT = "人脸与公安网照片不一致，请确保是账户本人操作"
REMEDY = "确认是账户和证件所有者本人在操作"  # the chat rendering of the 1-10 remedy
STREAM_MIN_BYTES = 20 * 1024  # the gateway inlines files up to ~20 KB; bigger ones use the stream RPC


# -- media ------------------------------------------------------------------------------------
def _photo(path: Path, w: int, h: int, seed: int) -> Path:
    """A real photo-like image with noise, so it is well over 20 KB."""
    noise = Image.effect_noise((w, h), 40 + seed).convert("RGB")
    tint = Image.new("RGB", (w, h), ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    im = Image.blend(noise, tint, 0.5)
    draw = ImageDraw.Draw(im)
    draw.rectangle((w // 8, h // 8, w // 2, h // 2), outline=(0, 0, 0), width=4)
    if path.suffix == ".png":
        im.save(path, "PNG")
    else:
        im.save(path, "JPEG", quality=88)
    assert path.stat().st_size > STREAM_MIN_BYTES
    return path


def _video(path: Path) -> Path:
    import av

    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(15):
            frame = av.VideoFrame.from_image(Image.effect_noise((320, 240), 30 + i).convert("RGB"))
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    assert path.stat().st_size > STREAM_MIN_BYTES
    return path


@pytest.fixture(scope="module")
def media(e2e_tmp) -> dict[str, Path]:
    d = e2e_tmp / "media"
    d.mkdir()
    return {
        "handheld": _photo(d / "handheld.jpg", 800, 600, 1),
        "front": _photo(d / "front.png", 640, 400, 2),
        "back": _photo(d / "back.jpg", 640, 400, 3),
        "screenshot": _photo(d / "screenshot.png", 540, 960, 4),
        "video": _video(d / "failure.mp4"),
    }


# -- the shared gateway and bot ------------------------------------------------------------------
class World:
    def __init__(self, gw: Gateway, bot: Bot, data_dir: Path) -> None:
        self.gw, self.bot, self.data_dir = gw, bot, data_dir


@pytest.fixture(scope="module")
def world(start_gateway, start_bot, e2e_tmp) -> World:
    gw = start_gateway()
    data_dir = e2e_tmp / "data"
    since = gw.mark()
    bot = start_bot(data_dir, gw.endpoint)
    bot.wait_connected(gw, since)
    bot.wait_log("logged in as")  # the gateway logged in at its start; the bot was told on connect
    return World(gw, bot, data_dir)


def texts(events: list[dict]) -> str:
    return "\n".join(e.get("text") or "" for e in events)


def dm(gw: Gateway, user: str, text: str, first_timeout: float = 20.0) -> list[dict]:
    since = gw.mark()
    gw.send("dm", text=text, **{"from": user})
    return gw.collect(gw.user(user), since, first_timeout=first_timeout)


def media_msg(gw: Gateway, user: str, path: Path) -> list[dict]:
    since = gw.mark()
    sent = gw.send("media", path=str(path), name=path.name, **{"from": user})
    assert sent["event"] == "sent" and sent["bytes"] > STREAM_MIN_BYTES
    return gw.collect(gw.user(user), since, first_timeout=30.0)


# -- scenarios ------------------------------------------------------------------------------------
def test_dm_failure_prompt_gets_remedy(world: World):
    replies = dm(world.gw, "bob", PROMPT)
    assert REMEDY in texts(replies), texts(replies)
    assert all(not r["room"] and r["mentions"] == [] for r in replies)


def test_room_mention_gets_mentioned_reply(world: World):
    gw = world.gw
    since = gw.mark()
    gw.send("room", text=f"@{BOT_NAME} {PROMPT}", mention=True, **{"from": "bob"})
    replies = gw.collect(gw.info["roomId"], since)
    first = replies[0]
    assert first["room"] and first["mentions"] == [gw.user("bob")]
    assert first["text"].startswith("@Bob\u2005")
    assert REMEDY in texts(replies)


def test_room_chatter_without_mention_is_ignored(world: World):
    gw = world.gw
    since = gw.mark()
    gw.send("room", text="今天天气不错，大家中午吃什么？", mention=False, **{"from": "carol"})
    gw.send("room", text=PROMPT, mention=False, **{"from": "carol"})
    time.sleep(3.0)
    assert gw.said(gw.info["roomId"], since) == []


def test_friend_request_with_keyword_is_accepted_and_greeted(world: World):
    gw = world.gw
    since = gw.mark()
    sent = gw.send("friend", hello="你好，我大鱼号实名认证失败了")
    accepted = gw.wait(lambda e: e["event"] == "friendship_accepted", since=since)
    assert accepted["friendshipId"] == sent["id"]
    greeting = gw.wait(lambda e: e["event"] == "bot_said" and e["to"] == sent["from"], since=since)
    assert "实名认证" in greeting["text"]

    since = gw.mark()
    gw.send("friend", hello="加个好友")
    time.sleep(1.5)
    assert gw.find(lambda e: e["event"] == "friendship_accepted", since) == []


def test_duplicate_delivery_is_answered_once(world: World):
    gw = world.gw
    dave = gw.user("dave")
    since = gw.mark()
    sent = gw.send("dm", text=PROMPT, **{"from": "dave"})
    first = gw.collect(dave, since)
    assert REMEDY in texts(first)
    mark = gw.mark()
    gw.send("redeliver", id=sent["id"])
    gw.send("redeliver", id=sent["id"])
    time.sleep(2.5)
    assert gw.said(dave, mark) == []


# The item the bot asks for, by keywords of its question -> what alice answers.
def answer_for(question: str, media: dict[str, Path]) -> tuple[str, object]:
    q = question
    if "回复“对”" in q:  # "is this the prompt you saw?"
        return "dm", "对"
    if "回复“确认”" in q:
        return "dm", "确认"
    if "军人" in q:
        return "dm", "否"
    if "线上反馈" in q:
        return "dm", "没有"
    labels = re.findall(r"【([^】]+)】", q)
    label = labels[-1] if labels else q
    table = [
        ("大鱼号名称", ("dm", "小鱼的美食日记")),
        ("身份证号码", ("dm", "11010519491231002X")),
        ("姓名", ("dm", "欧阳·娜娜")),
        ("手持", ("media", media["handheld"])),
        ("反面", ("media", media["back"])),
        ("正面", ("media", media["front"])),
        ("异常提示语", ("dm", "对")),
        ("截图", ("media", media["screenshot"])),
        ("手机型号", ("dm", "iPhone 13")),
        ("淘宝版本", ("dm", "10.38.0")),
        ("视频", ("media", media["video"])),
        ("联系方式", ("dm", "13800138000")),
    ]
    for key, answer in table:
        if key in label:
            return answer
    if "确认" in q:
        return "dm", "确认"
    raise AssertionError(f"don't know how to answer: {question}")


def test_email_appeal_survives_bot_kill(world: World, start_bot, media):
    """Full email-route appeal with real images and a video through the gateway; midway the bot is
    SIGKILLed and a new process on the same data dir carries on at the same item."""
    gw = world.gw
    replies = dm(gw, "alice", PROMPT)
    assert REMEDY in texts(replies)
    assert "申诉" in texts(replies)  # the appeal offer
    replies = dm(gw, "alice", "是")
    assert "线上反馈" in replies[-1]["text"], texts(replies)
    replies = dm(gw, "alice", "没有")

    asked: list[str] = []
    killed = False
    for _ in range(30):
        question = replies[-1]["text"]
        if "AP-" in texts(replies):
            break
        kind, answer = answer_for(question, media)
        asked.append(question[:20])
        if not killed and kind == "media" and answer == media["handheld"]:
            # SIGKILL mid-collection; the new process must still be waiting for this item
            world.bot.kill()
            since = gw.mark()
            world.bot = start_bot(world.data_dir, gw.endpoint)
            world.bot.wait_connected(gw, since)
            killed = True
            replies = media_msg(gw, "alice", answer)
            question = replies[-1]["text"]
            assert "已收到图片" in texts(replies), texts(replies)  # accepted by the new process...
            assert "手持" not in question and re.search(r"【[^】]+】", question), question  # ...next item
            continue
        replies = dm(gw, "alice", answer) if kind == "dm" else media_msg(gw, "alice", answer)
    else:
        raise AssertionError(f"appeal did not finish; asked: {asked}")
    assert killed, f"never reached the handheld photo item; asked: {asked}"
    final = texts(replies)
    appeal_id = re.search(r"AP-[0-9A-Za-z-]+", final)
    assert appeal_id, final
    # the inbox keeps nothing once the engine took the files
    inbox = world.data_dir / "inbox"
    assert not inbox.exists() or [p.name for p in inbox.iterdir() if not p.name.startswith(".")] == []

    # An operator sets a status from the CLI, in another process: the running bot tells alice.
    since = gw.mark()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOT_", "WECHATY_"))}
    env["BOT_KEY_FILE"] = str(world.data_dir.parent / "keys" / "appeal.key")
    cli = subprocess.run([sys.executable, "-m", "bot", "appeals", "status", appeal_id.group(0), "reviewing",
                          "--note", "材料已收到", "--data-dir", str(world.data_dir)],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert cli.returncode == 0, cli.stderr
    told = gw.wait(lambda e: e["event"] == "bot_said" and "材料已收到" in (e.get("text") or ""), timeout=20,
                   since=since)
    assert told["to"] == gw.user("alice") and appeal_id.group(0) in told["text"]


def test_gateway_restart_bot_reconnects(world: World, start_gateway):
    old = world.gw
    port = old.port
    old.close()
    gw = start_gateway(port)
    world.gw = gw
    gw.wait(lambda e: e["event"] == "client_stream_open", timeout=30, since=0)
    replies = dm(gw, "carol", PROMPT)
    assert REMEDY in texts(replies)
    assert world.bot.proc.poll() is None


def test_bot_stops_cleanly_on_sigterm(world: World):
    assert world.bot.stop() == 0
    assert "Traceback" not in world.bot.log()


def test_wrong_token_exits_nonzero(start_gateway, start_bot, e2e_tmp):
    gw = start_gateway()
    bot = start_bot(e2e_tmp / "data-badtoken", gw.endpoint, token="not-the-token")
    assert bot.proc.wait(30) == 4
    assert "refused the token" in bot.log()


def test_missing_endpoint_exits_2(start_bot, e2e_tmp):
    bot = start_bot(e2e_tmp / "data-noendpoint", "")
    assert bot.proc.wait(30) == 2
    assert "WECHATY_PUPPET_SERVICE_ENDPOINT" in bot.log()
    assert "Running a Wechaty puppet-service gateway" in bot.log()


def test_no_gateway_at_startup_exits_nonzero(e2e_tmp, capsys):
    """In-process with a stub engine and a short start-up timeout (the default is 30 s)."""
    from bot.settings import load_settings
    from bot.transport.wechaty_adapter import EXIT_NO_GATEWAY, WechatOptions, run_wechat

    class NoEngine:
        async def close(self) -> None:
            pass

    async def factory(_settings):
        return NoEngine()

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = load_settings(data_dir=e2e_tmp / "data-nogw", env={
        "WECHATY_PUPPET_SERVICE_TOKEN": "token", "WECHATY_PUPPET_SERVICE_ENDPOINT": f"127.0.0.1:{port}"})
    t0 = time.monotonic()
    code = asyncio.run(run_wechat(settings, engine_factory=factory,
                                  options=WechatOptions(startup_timeout=2.0, backoff_base=0.2)))
    assert code == EXIT_NO_GATEWAY
    assert time.monotonic() - t0 < 10
    assert "no Wechaty gateway answered" in capsys.readouterr().err
