"""Whole conversations through the engine, with a fake clock and real files."""
import asyncio
import json
import stat
from email import policy
from email.parser import BytesParser

import pytest

from bot.appeals.package import export_appeal
from driver import Driver, email_answers, online_answers, run_appeal


async def test_remedy_for_a_prompt_without_appeal(driver):
    r = await driver.say("扫描二维码后提示“未知客户端”")
    assert r["prompt_id"] == 18 and r["state"] == "idle" and r["awaiting"] is None
    assert "实名认证必须使用淘宝APP进行认证" in r["text"]


async def test_email_route_to_a_finished_package(driver, media, tmp_path):
    final, asked = await run_appeal(driver, email_answers(media), "没有")
    assert asked == ["account_name", "real_name", "id_number", "id_handheld_photo", "id_front_photo",
                     "id_back_photo", "error_prompt", "taobao_screenshot", "phone_model", "taobao_version",
                     "failure_video", "military", "contact", "confirm"]
    appeal_id = final["appeal_id"]
    assert appeal_id and appeal_id.startswith("AP-") and appeal_id in final["text"]
    assert "个人实名认证失败材料-小鱼的美食日记" in final["text"] and "社群管理员" in final["text"]  # no SMTP: the operator submits
    assert final["state"] == "idle"

    settings, vault = driver.engine.settings, driver.engine.vault
    pkg = settings.data_dir / "appeals" / appeal_id
    assert stat.S_IMODE(pkg.stat().st_mode) == 0o700
    for f in pkg.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        assert b"11010519491231002X" not in f.read_bytes()
    out = export_appeal(settings, vault, appeal_id, tmp_path / "export")
    record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
    assert record["route"] == "email" and record["prompt_id"] == 2
    assert record["prompt_text"] == "人脸与公安网照片不一致,请确保是账户本人操作"
    slots = record["slots"]
    assert slots["id_number"] == "11010519491231002X" and slots["real_name"] == "欧阳·娜娜"
    assert slots["taobao_version"] == "10.38.0" and slots["contact"] == "13800138000"
    assert slots["error_prompt"] == record["prompt_text"]
    assert slots["military_docs"] is None and "military_docs" in record["skipped"]
    assert (out / "failure_video.mp4").read_bytes() == media["video"].read_bytes()
    assert (out / "id_front_photo.png").read_bytes() == media["front"].read_bytes()

    msg = BytesParser(policy=policy.default).parse((out / "email.eml").open("rb"))
    assert msg["Subject"] == "个人实名认证失败材料-小鱼的美食日记"
    assert msg["To"] == "appeals@example.invalid"
    body = msg.get_body(("plain",)).get_content()
    labels = [m.label for m in driver.engine.snapshot.kb.routes["email"].materials]
    positions = [body.index(label) for label in labels]
    assert positions == sorted(positions)
    kinds = sorted(part.get_content_type() for part in msg.iter_attachments())
    assert kinds == ["image/jpeg", "image/jpeg", "image/png", "image/png", "video/mp4"]
    # the working copies are gone once packaged
    assert not any(p.is_file() for p in (settings.data_dir / "files").rglob("*"))


async def test_online_route_to_a_finished_package(driver, media, tmp_path):
    final, asked = await run_appeal(driver, online_answers(media), "有",
                                    prompt="淘宝认证时上传身份证以后跳回认证初始页面,没有失败原因")
    assert asked == ["failure_video", "id_handheld_photo", "id_front_photo", "id_back_photo", "confirm"]
    assert "【线上反馈】" in final["text"]
    out = export_appeal(driver.engine.settings, driver.engine.vault, final["appeal_id"], tmp_path / "x")
    record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
    assert record["route"] == "online" and record["prompt_id"] == 15
    assert not (out / "email.eml").exists()


@pytest.mark.parametrize("slot,bad,reason", [
    ("id_number", {"text": "110105194912310021"}, "校验"),
    ("id_number", {"text": "12345"}, "18"),
    ("real_name", {"text": "zhang3"}, "姓名"),
    ("id_handheld_photo", {"image": "fake_jpeg"}, "图片"),
    ("id_handheld_photo", {"image": "tiny"}, "小"),
    ("id_handheld_photo", {"text": "身份证在我这里"}, "图片"),
    ("taobao_version", {"text": "最新版"}, "版本"),
    ("contact", {"text": "12345"}, ""),
    ("failure_video", {"video": "audio"}, "视频"),
    ("failure_video", {"video": "truncated"}, "视频"),
])
async def test_validation_failures_are_reasked(driver, media, slot, bad, reason):
    answers = email_answers(media)
    r = await driver.say("人脸与公安网照片不一致")
    r = await driver.say("是")
    r = await driver.say("没有")
    while r["awaiting"] != slot:
        r = (await driver.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
    bad = {k: (str(media[v]) if k in ("image", "video") else v) for k, v in bad.items()}
    r = (await driver.send(**{"from": "u1", **bad}))[-1]
    assert r["awaiting"] == slot and reason in r["text"]
    r = (await driver.send(**{"from": "u1", **answers[slot]}))[-1]
    assert r["awaiting"] != slot


async def test_three_failures_offer_human_help_and_keep_data(driver):
    await driver.say("验证不通过,请重新认证")
    await driver.say("是")
    await driver.say("没有")
    await driver.say("小鱼号")
    for _ in range(2):
        r = await driver.say("abc")
        assert "在线人工客服" not in r["text"]
    r = await driver.say("abc")
    assert "在线人工客服" in r["text"] and r["awaiting"] == "real_name"
    r = await driver.say("进度")
    assert "已完成 1 项:大鱼号名称" in r["text"]


async def test_file_sent_for_another_item_is_kept_and_assigned(driver, media):
    await driver.say("验证不通过,请重新认证")
    await driver.say("是")
    r = await driver.say("有")
    assert r["awaiting"] == "failure_video"
    r = (await driver.send(**{"from": "u1", "image": str(media["back"])}))[-1]
    assert r["awaiting"] == "file_slot" and "单独身份证反面照片" in r["text"]
    options = [line for line in r["text"].splitlines() if line[:1].isdigit()]
    choice = next(line.split(".")[0] for line in options if "反面" in line)
    r = await driver.say(choice)
    assert r["awaiting"] == "failure_video"
    r = (await driver.send(**{"from": "u1", "video": str(media["video"])}))[-1]
    assert r["awaiting"] == "id_handheld_photo"
    r = await driver.say("进度")
    assert "还差 2 项" in r["text"]


async def test_military_yes_and_edit_from_summary(driver, media):
    answers = email_answers(media)
    answers["military"] = {"text": "是"}
    answers["military_docs"] = {"image": str(media["front"])}
    r = await driver.say("认证材料不满足要求,请重新进行认证")
    await driver.say("是")
    r = await driver.say("没有")
    while r["awaiting"] != "confirm":
        r = (await driver.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
    assert "涉及军人可提供相关证件:已收到图片" in r["text"]
    assert "110105********002X" in r["text"] and "11010519491231002X" not in r["text"]
    r = await driver.say("修改 9")
    assert r["awaiting"] == "phone_model"
    r = await driver.say("华为 Mate 60 Pro")
    assert r["awaiting"] == "confirm" and "华为 Mate 60 Pro" in r["text"]


async def test_cancel_deletes_collected_files(driver, media):
    await driver.say("验证不通过,请重新认证")
    await driver.say("是")
    await driver.say("有")
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    files = driver.engine.settings.data_dir / "files"
    assert any(p.is_file() for p in files.rglob("*"))
    r = await driver.say("取消")
    assert r["state"] == "idle" and "删除" in r["text"]
    assert not any(p.is_file() for p in files.rglob("*"))
    assert media["video"].exists()  # the user's own file is never touched


async def test_skip_only_optional(driver, media):
    await driver.say("验证不通过,请重新认证")
    await driver.say("是")
    await driver.say("没有")
    r = await driver.say("跳过")
    assert "不能跳过" in r["text"] and r["awaiting"] == "account_name"


async def test_suggest_then_choose_by_number(driver):
    r = await driver.say("请确保是账户本人操作")
    assert r["awaiting"] == "choice" and r["prompt_id"] is None
    r = await driver.say("2")
    assert r["prompt_id"] == 2 and r["awaiting"] == "appeal_offer"


async def test_help_and_bad_inputs(driver):
    for text in ["", "   ", "😀😀😀", "\x00\x01binary\x7f", "x" * 1_000_000, "hello"]:
        r = await driver.say(text)
        assert r["state"] == "idle" and r["text"]
    r = await driver.say("帮助")
    assert "删除我的资料" in r["text"]


async def test_dedupe_by_message_id(driver):
    first = await driver.send(**{"id": "m1", "from": "u1", "text": "认证信息已超过入驻上限"})
    again = await driver.send(**{"id": "m1", "from": "u1", "text": "认证信息已超过入驻上限"})
    assert len(first) == 1 and again == []


async def test_reminder_then_expiry_deletes_partial_data(driver, media):
    await driver.say("验证不通过,请重新认证", at="2026-11-24T10:00:00+08:00")
    await driver.say("是")
    await driver.say("有")
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    assert await driver.send(tick="2026-11-24T10:20:00+08:00") == []
    reminder = await driver.send(tick="2026-11-24T10:31:00+08:00")
    assert len(reminder) == 1 and "还差 3 项" in reminder[0]["text"] and reminder[0]["chat"] == "u1"
    assert await driver.send(tick="2026-11-24T11:31:00+08:00") == []  # reminded once
    expired = await driver.send(tick="2026-11-25T10:01:00+08:00")
    assert len(expired) == 1 and "已删除" in expired[0]["text"] and expired[0]["state"] == "idle"
    assert not any(p.is_file() for p in (driver.engine.settings.data_dir / "files").rglob("*"))
    r = await driver.say("进度")
    assert "没有进行中的申诉" in r["text"]


async def test_delete_my_data(driver, media, tmp_path):
    final, _ = await run_appeal(driver, online_answers(media), "有")
    assert driver.engine.store.appeals()
    r = await driver.say("删除我的资料")
    assert r["awaiting"] == "delete_confirm"
    r = await driver.say("确认删除")
    assert "申诉材料包 1 个" in r["text"]
    assert not (driver.engine.settings.data_dir / "appeals" / final["appeal_id"]).exists()
    assert driver.engine.store.appeals() == []


async def test_delete_can_be_declined_and_resumes(driver):
    await driver.say("验证不通过,请重新认证")
    await driver.say("是")
    await driver.say("没有")
    r = await driver.say("删除我的资料")
    r = await driver.say("否")
    assert r["awaiting"] == "account_name"


async def test_room_appeal_goes_to_dm_and_id_numbers_are_never_echoed(driver):
    r = (await driver.send(room="r1", **{"from": "u2"}, mention=True, text="人脸与身份证头像不一致,请用户本人进行认证"))
    assert len(r) == 1 and r[0]["mention"] and r[0]["chat"] == "r1" and r[0]["to"] == "u2"
    assert "私聊" in r[0]["text"] and r[0]["state"] == "idle"
    r = await driver.send(room="r1", **{"from": "u2"}, text="我的身份证号是11010519491231002X 帮我看看")
    assert len(r) == 1 and "撤回" in r[0]["text"]
    assert "11010519491231002X" not in r[0]["text"] and "1101" not in r[0]["text"]


async def test_room_modes(driver):
    chatter = {"room": "r1", "from": "u3", "text": "今晚一起吃饭吗"}
    prompt = {"room": "r1", "from": "u3", "text": "认证信息已超过入驻上限,怎么办"}
    assert await driver.send(**chatter) == []
    assert await driver.send(**prompt) == []  # default mode: mention only
    driver.engine.store.set_room_mode("r1", "auto")
    assert await driver.send(**chatter) == []
    r = await driver.send(**prompt)
    assert len(r) == 1 and r[0]["prompt_id"] == 13 and r[0]["mention"]
    driver.engine.store.set_room_mode("r1", "off")
    assert await driver.send(**{**prompt, "mention": True}) == []


async def test_two_users_in_one_room_at_once(tmp_path, media):
    d = await Driver.open(tmp_path)
    try:
        a = d.send(room="r1", **{"from": "ua"}, mention=True, text="认证信息已超过入驻上限")
        b = d.send(room="r1", **{"from": "ub"}, mention=True, text="扫描二维码后提示“未知客户端”")
        ra, rb = await asyncio.gather(a, b)
        assert (ra[0]["to"], ra[0]["prompt_id"]) == ("ua", 13)
        assert (rb[0]["to"], rb[0]["prompt_id"]) == ("ub", 18)
    finally:
        await d.close()


async def test_one_users_messages_never_interleave(tmp_path):
    d = await Driver.open(tmp_path)
    try:
        await d.say("验证不通过,请重新认证")
        await d.say("是")
        await d.say("没有")
        # Two answers arriving at once are handled one after the other, in order.
        r1, r2 = await asyncio.gather(d.send(**{"from": "u1", "text": "小鱼号"}),
                                      d.send(**{"from": "u1", "text": "张三"}))
        assert r1[-1]["awaiting"] == "real_name" and r2[-1]["awaiting"] == "id_number"
    finally:
        await d.close()


async def test_logs_never_hold_id_numbers_or_paths(driver, media, caplog):
    caplog.set_level("DEBUG")
    await run_appeal(driver, email_answers(media), "没有")
    text = caplog.text
    assert "11010519491231002" not in text and str(media["front"]) not in text


async def test_pause_keeps_data_without_reminders_until_expiry(driver, media):
    await driver.say("验证不通过,请重新认证", at="2026-11-24T10:00:00+08:00")
    await driver.say("是")
    await driver.say("有")
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    r = await driver.say("暂停")
    assert "保留" in r["text"] and r["awaiting"] == "id_handheld_photo"
    assert await driver.send(tick="2026-11-24T11:00:00+08:00") == []  # no reminder while paused
    r = await driver.say("进度", at="2026-11-24T12:00:00+08:00")
    assert "已完成 1 项" in r["text"]
    expired = await driver.send(tick="2026-11-25T12:01:00+08:00")
    assert len(expired) == 1 and "已删除" in expired[0]["text"]


async def test_a_photo_labelled_as_video_fills_the_photo_item(driver, media):
    await driver.say("验证不通过,请重新认证")
    await driver.say("是")
    r = await driver.say("有")
    r = (await driver.send(**{"from": "u1", "video": str(media["video"])}))[-1]
    assert r["awaiting"] == "id_handheld_photo"
    r = (await driver.send(**{"from": "u1", "video": str(media["handheld"])}))[-1]
    assert r["awaiting"] == "id_front_photo" and "已收到图片" in r["text"]
