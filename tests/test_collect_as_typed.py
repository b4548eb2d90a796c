"""Both appeal routes typed the way creators type, through the real engine with real files, to the
exported package: values inside sentences, two acts in one message, a correction in the middle,
photos in a row, a picture where the video is awaited. Every item of the package must be exactly
what was meant (text values, and each file by its bytes)."""
import hashlib
import json

from bot.appeals.package import export_appeal

P2 = "人脸与公安网照片不一致,请确保是账户本人操作"
ID = "33010619920815123X"


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _export(driver, appeal_id, tmp_path):
    engine = driver.engine
    out = export_appeal(engine.settings, engine.vault, appeal_id, tmp_path / "export", area=engine.store.files)
    return out, json.loads((out / "appeal.json").read_text(encoding="utf-8"))


async def test_email_route_typed_as_creators_type(driver, media, tmp_path):
    say = driver.say
    r = await say("刷脸之后提示 " + P2 + " 咋办")
    assert r["awaiting"] == "appeal_offer"
    r = await say("可以，那材料要准备些啥")  # a yes and a question: both taken
    assert r["awaiting"] == "route" and "手持身份证" in r["text"]
    r = await say("没有吧 我也不确定")  # hedged: not a no
    assert r["awaiting"] == "route"
    r = await say("我这边后台压根没这个东西")
    assert r["awaiting"] == "account_name"
    r = await say("我的大鱼号叫做小王说车 去年注册的")
    assert "已记录【大鱼号名称】:小王说车" in r["text"] and r["awaiting"] == "real_name"
    r = await say("稍等 我去拿下身份证")  # not a name
    assert r["awaiting"] == "real_name" and "已记录" not in r["text"]
    r = await say("我叫陈美玲")
    assert "陈美玲" in r["text"] and r["awaiting"] == "id_number"
    # three photos in a row while the ID number is awaited: each kept, each assigned in order
    replies = []
    for key in ("handheld", "front", "back"):
        replies += await driver.send(**{"from": "u1", "image": str(media[key])})
    assert replies[0]["awaiting"] == "file_slot" and "第 1 个" in replies[0]["text"]
    assert "第 2 个" in replies[1]["text"] and "第 3 个" in replies[2]["text"]
    r = await say("1")  # the first: 手持身份证正面照片
    assert "第 2 个" in r["text"] and r["awaiting"] == "file_slot"
    r = await say("好像是第一个吧")  # the second: the first option left, 单独身份证正面照片
    assert "第 3 个" in r["text"]
    r = await say("1")  # the third: 单独身份证反面照片
    assert r["awaiting"] == "id_number"
    r = await say("等下 姓名填错了 要改")  # a correction in the middle
    assert r["awaiting"] == "real_name"
    r = await say("姓名：王秀英。")
    assert "王秀英" in r["text"] and r["awaiting"] == "id_number"  # back to where it was
    r = await say("身份证号" + ID[:6] + " " + ID[6:14] + " " + ID[14:].lower() + "，谢谢啦")
    assert r["awaiting"] == "error_prompt"
    r = await say("对")
    assert r["awaiting"] == "taobao_screenshot"
    r = (await driver.send(**{"from": "u1", "image": str(media["screenshot"])}))[-1]
    assert r["awaiting"] == "phone_model"
    r = await say("我用的是华为Mate60 Pro 刚买的")
    assert "华为Mate60 Pro" in r["text"] and r["awaiting"] == "taobao_version"
    r = await say("版本是10.42.10")
    assert r["awaiting"] == "failure_video"
    r = (await driver.send(**{"from": "u1", "video": str(media["video"])}))[-1]
    assert r["awaiting"] == "military"
    r = await say("不涉及")
    assert r["awaiting"] == "contact"
    r = await say("手机号13857112345 微信也是这个")
    assert r["awaiting"] == "confirm"
    r = await say("确认")
    appeal_id = r["appeal_id"]
    assert appeal_id
    out, record = _export(driver, appeal_id, tmp_path)
    slots = record["slots"]
    assert slots["account_name"] == "小王说车"
    assert slots["real_name"] == "王秀英"
    assert slots["id_number"] == ID
    assert slots["phone_model"] == "华为Mate60 Pro"
    assert slots["taobao_version"] == "10.42.10"
    assert slots["contact"] == "13857112345"
    assert slots["error_prompt"] == P2
    for slot, key in (("id_handheld_photo", "handheld"), ("id_front_photo", "front"), ("id_back_photo", "back"),
                      ("taobao_screenshot", "screenshot"), ("failure_video", "video")):
        files = list(out.glob(slot + ".*"))
        assert len(files) == 1 and sha(files[0]) == sha(media[key]), slot


async def test_online_route_typed_as_creators_type(driver, media, tmp_path):
    say = driver.say
    await say(P2)
    r = await say("整起来")
    assert r["awaiting"] == "route"
    r = await say("后台帮助里能找到线上反馈")
    assert r["awaiting"] == "failure_video"
    r = (await driver.send(**{"from": "u1", "image": str(media["handheld"])}))[-1]
    assert "需要视频" in r["text"] and r["awaiting"] == "file_slot"  # said so, and the photo kept
    r = await say("第一个")
    assert r["awaiting"] == "failure_video"
    r = await say("我放弃了 太折腾")
    assert r["awaiting"] == "quit_confirm" and "暂停" in r["text"]
    r = await say("继续")
    assert r["awaiting"] == "failure_video"
    r = (await driver.send(**{"from": "u1", "video": str(media["video"])}))[-1]
    assert r["awaiting"] == "id_front_photo"
    for key in ("front", "back"):  # photos in a row, each the awaited one
        r = (await driver.send(**{"from": "u1", "image": str(media[key])}))[-1]
    assert r["awaiting"] == "confirm"
    r = await say("修改 3")  # swap the front photo at the summary
    assert r["awaiting"] == "id_front_photo"
    r = (await driver.send(**{"from": "u1", "image": str(media["screenshot"])}))[-1]
    assert r["awaiting"] == "confirm"
    r = await say("确认")
    out, record = _export(driver, r["appeal_id"], tmp_path)
    for slot, key in (("failure_video", "video"), ("id_handheld_photo", "handheld"), ("id_front_photo", "screenshot"),
                      ("id_back_photo", "back")):
        files = list(out.glob(slot + ".*"))
        assert len(files) == 1 and sha(files[0]) == sha(media[key]), slot
