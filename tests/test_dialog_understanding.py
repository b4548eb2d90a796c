"""The dialog's order of interpretation in every waiting state, through the real engine.

command -> question (FAQ / about the awaited item) -> new failure prompt (switch?) -> small talk
-> the expected answer. A question is never stored as an item's value.
"""
import json

import pytest

from bot.appeals.package import export_appeal
from driver import Driver

P2 = "人脸与公安网照片不一致,请确保是账户本人操作"
P6 = "姓名与身份证号不匹配,请重新确认并再次认证"


async def test_offer_answers_in_natural_words(driver):
    r = await driver.say_all(P2)
    assert r["awaiting"] == "appeal_offer"
    r = await driver.say("好呀，麻烦你帮我弄一下")
    assert r["awaiting"] == "route"


async def test_a_question_at_the_offer_is_answered_and_the_offer_repeated(driver):
    await driver.say_all(P2)
    r = await driver.say("申诉的话都要准备啥")
    assert r["awaiting"] == "appeal_offer"
    # both routes' lists, the 13 email items in the seed's order
    text = r["text"][r["text"].index("13 项"):]
    labels = [m.label for m in driver.engine.snapshot.kb.routes["email"].materials]
    positions = [text.index(label) for label in labels]
    assert positions == sorted(positions)
    assert "需要我帮你整理申诉材料吗" in text


async def test_declining_keeps_the_way_back_open(driver):
    await driver.say_all(P2)
    r = await driver.say("暂时不用了")
    assert r["awaiting"] is None and "申诉" in r["text"]
    r = await driver.say("邮箱申诉要什么材料？")
    assert "联系方式" in r["text"] and "淘宝版本" in r["text"]


async def test_unsure_at_the_route_gets_help_never_a_default(driver):
    await driver.say_all(P2, "需要")
    r = await driver.say("不知道在哪看")
    assert r["awaiting"] == "route" and "后台" in r["text"]
    r = await driver.say("后台找了半天没找到")
    assert r["awaiting"] == "account_name"


@pytest.mark.parametrize("question", ["大鱼号名称是指什么", "这个怎么填呢？", "为什么要这个", "可以用昵称吗"])
async def test_a_question_is_never_stored_as_an_item(driver, question):
    await driver.say_all(P2, "需要", "没有")
    r = await driver.say(question)
    assert r["awaiting"] == "account_name" and "已记录" not in r["text"]
    assert "大鱼号名称" in r["text"]  # the pending question, repeated
    r = await driver.say("进度")
    assert "已完成 0 项" in r["text"]


async def test_privacy_question_at_the_id_number(driver):
    await driver.say_all(P2, "需要", "没有", "鱼乐小站", "欧阳娜娜")
    r = await driver.say("身份证号发给你安全吗")
    assert r["awaiting"] == "id_number" and "加密" in r["text"] and "删除我的资料" in r["text"]
    assert "18位" not in r["text"].split("\n")[0]
    r = await driver.say("11010519491231002X")
    assert r["awaiting"] == "id_handheld_photo" and "110105********002X" in r["text"]


async def test_an_id_number_is_refused_as_the_account_name(driver):
    await driver.say_all(P2, "需要", "没有")
    r = await driver.say("11010519491231002X")
    assert r["awaiting"] == "account_name" and "11010519491231002X" not in r["text"]


async def test_chit_chat_at_a_text_item_is_not_a_value(driver):
    await driver.say_all(P2, "需要", "没有")
    r = await driver.say("好的")
    assert r["awaiting"] == "account_name" and "已记录" not in r["text"]
    r = await driver.say("没有")
    assert r["awaiting"] == "account_name" and "暂停" in r["text"]


async def test_file_items_answer_questions_and_not_now(driver):
    await driver.say_all(P2, "需要", "有")
    r = await driver.say("直接手机录屏可以吗")
    assert "非录屏" in r["text"] and r["awaiting"] == "failure_video"
    r = await driver.say("视频我晚点再录，现在在上班")
    assert "暂停" in r["text"] and "不是文字" not in r["text"] and r["awaiting"] == "failure_video"
    r = await driver.say("视频要拍哪些内容")
    assert "正脸出镜" in r["text"]


async def test_new_prompt_mid_appeal_offers_a_switch_and_keeps_data(driver, tmp_path):
    await driver.say_all(P2, "需要", "没有", "鱼乐小站")
    r = await driver.say("刚刚又试了一下，这回提示" + P6)
    assert r["awaiting"] == "switch" and "已记录" not in r["text"] and P6 in r["text"]
    r = await driver.say("1")
    assert r["awaiting"] == "real_name" and r["prompt_id"] == 6
    r = await driver.say("进度")
    assert "已完成 1 项:大鱼号名称" in r["text"]


async def test_new_prompt_mid_appeal_dropping_data(driver):
    await driver.say_all(P2, "需要", "没有", "鱼乐小站")
    r = await driver.say("又试了一次，这次提示认证信息已超过入驻上限")
    assert r["awaiting"] == "switch"
    r = await driver.say("2")
    assert r["prompt_id"] == 13 and r["awaiting"] is None and "注销" in r["text"]
    r = await driver.say("进度")
    assert "没有进行中的申诉" in r["text"]


async def test_new_prompt_mid_appeal_not_switching(driver):
    await driver.say_all(P2, "需要", "没有", "鱼乐小站")
    await driver.say("又试了一次，这次提示认证信息已超过入驻上限")
    r = await driver.say("不换")
    assert r["awaiting"] == "real_name" and r["prompt_id"] == 2


async def test_new_prompt_before_anything_is_collected_switches_at_once(driver):
    await driver.say_all(P2, "需要")
    r = await driver.say("不对，我看错了，提示的是认证信息已超过入驻上限")
    assert r["prompt_id"] == 13 and r["awaiting"] is None


async def test_the_error_prompt_item_takes_a_prompt_as_its_value(driver):
    await driver.say_all(P2, "需要", "没有", "鱼乐小站", "欧阳娜娜", "11010519491231002X")
    conv = driver.engine.store.load("u1", "u1")
    conv.data["slots"].update(id_handheld_photo={"file": "x", "kind": "image"},
                              id_front_photo={"file": "y", "kind": "image"},
                              id_back_photo={"file": "z", "kind": "image"})
    conv.data["awaiting"] = "error_prompt"
    driver.engine.store.save(conv)
    r = await driver.say(P6)
    assert r["awaiting"] == "taobao_screenshot" and r["prompt_id"] == 6


async def test_military_question_understands_plain_answers(driver):
    conv_texts = [P2, "需要", "没有"]
    await driver.say_all(*conv_texts)
    conv = driver.engine.store.load("u1", "u1")
    conv.state, conv.data["awaiting"] = "military", "military"
    driver.engine.store.save(conv)
    r = await driver.say("这个是什么意思")
    assert r["awaiting"] == "military" and "军人" in r["text"]
    r = await driver.say("不是军人")
    assert r["awaiting"] != "military"


async def test_idle_small_talk(driver):
    r = await driver.say("好的 多谢")
    assert len(r["text"]) <= 80 and "没有找到" not in r["text"]
    r = await driver.say("你好，在不在")
    assert "实名认证" in r["text"]
    r = await driver.say("你是谁")
    assert "小助手" in r["text"]
    r = await driver.say("请问大鱼号的收益多久到账")
    assert "实名认证" in r["text"] and "人工客服" in r["text"] and r["prompt_id"] is None


async def test_vague_failure_gets_one_clarifying_question_then_prompt_15(driver):
    r = await driver.say("我的实名认证失败了")
    assert r["prompt_id"] != 14 and "提示" in r["text"] and "截图" in r["text"]
    r = await driver.say("没有")
    assert r["prompt_id"] == 15


async def test_no_prompt_at_all_is_prompt_15(driver):
    r = await driver.say("认证失败也不说原因，什么提示都没有")
    assert r["prompt_id"] == 15


async def test_human_help_with_handoff(tmp_path):
    d = await Driver.open(tmp_path, BOT_HANDOFF_TO="ops1,ops2")
    try:
        await d.say_all(P2, "需要", "没有", "鱼乐小站", "欧阳娜娜", "11010519491231002X")
        replies = await d.send(**{"from": "u1", "text": "能不能转人工"})
        mine = [r for r in replies if r["chat"] == "u1"]
        notes = [r for r in replies if r["chat"] in ("ops1", "ops2")]
        assert len(mine) == 1 and "人工客服" in mine[0]["text"] and mine[0]["awaiting"] == "id_handheld_photo"
        assert sorted(r["chat"] for r in notes) == ["ops1", "ops2"]
        for n in notes:
            assert "u1" in n["text"] and "提示语 2" in n["text"] and "3/13" in n["text"]
            assert "11010519491231002X" not in n["text"] and "欧阳娜娜" not in n["text"]
    finally:
        await d.close()


async def test_human_help_without_handoff_still_answers(driver):
    replies = await driver.send(**{"from": "u1", "text": "转人工"})
    assert len(replies) == 1 and "在线人工客服" in replies[0]["text"]


async def test_details_sends_the_seed_text(driver):
    r = await driver.say("认证材料不满足要求,请重新进行认证")
    assert r["prompt_id"] == 10 and "(1-10)" not in r["text"] and "上述" not in r["text"]
    assert len(r["text"]) <= 420
    r = await driver.say("详细")
    assert "如出现(1-10)上述提示" in r["text"] and r["awaiting"] == "appeal_offer"


@pytest.mark.parametrize("message,name", [
    ("提示：根据平台违规管理规则,您的认证主体【李大壮】,不可作为大鱼号的有效主体", "李大壮"),
    ("失敗提示:根據平臺違規管理規則,您的認證主體【歐陽·娜娜】,不可作為大魚號的有效主體", "欧阳·娜娜"),
])
async def test_prompt_14_shows_the_name_typed(driver, message, name):
    r = await driver.say(message)
    assert r["prompt_id"] == 14 and name in r["text"] and "XXX" not in r["text"]


async def test_prompt_14_without_a_name_shows_no_placeholder(driver):
    r = await driver.say("根据平台违规管理规则,您的认证主体不可作为大鱼号的有效主体")
    assert r["prompt_id"] == 14 and "XXX" not in r["text"]


async def test_a_whole_appeal_in_natural_words(driver, media, tmp_path):
    """The happy path answered the way people type, with questions on the way."""
    steps = [
        ("text", P2, "appeal_offer"), ("text", "好啊，麻烦帮我弄一下", "route"),
        ("text", "有的，我看见了", "failure_video"), ("text", "录屏可以吗", "failure_video"),
        ("video", str(media["video"]), "id_handheld_photo"), ("image", str(media["handheld"]), "id_front_photo"),
        ("image", str(media["front"]), "id_back_photo"), ("image", str(media["back"]), "confirm"),
        ("text", "好的，确认", None),
    ]
    r = None
    for kind, value, want in steps:
        r = (await driver.send(**{"from": "u1", kind: value}))[-1]
        assert r["awaiting"] == want, (value, r)
    assert r["appeal_id"]
    out = export_appeal(driver.engine.settings, driver.engine.vault, r["appeal_id"], tmp_path / "x")
    record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
    assert record["route"] == "online" and record["prompt_id"] == 2


async def test_agreeing_is_no_answer_to_a_question_of_fact(driver):
    await driver.say_all(P2, "需要")
    r = await driver.say("好的 帮我弄吧")  # agrees, but is the 线上反馈 entry there?
    assert r["awaiting"] == "route" and "线上反馈" in r["text"]
    r = await driver.say("好的，有的")
    assert r["awaiting"] == "failure_video"


async def test_a_question_at_the_summary_is_answered_and_the_summary_kept(driver, media):
    from driver import online_answers

    await driver.say_all(P2, "需要", "有")
    answers = online_answers(media)
    r = (await driver.send(**{"from": "u1", **answers["failure_video"]}))[-1]
    while r["awaiting"] != "confirm":
        r = (await driver.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
    r = await driver.say("提交之后多久有结果？")
    assert r["awaiting"] == "confirm" and "在线人工客服" in r["text"] and "确认" in r["text"]
    r = await driver.say("好的")  # agreement is enough to confirm here
    assert r["appeal_id"]


@pytest.mark.parametrize("smtp,expect", [(False, "社群管理员"), (True, "我会把材料包直接发送到大鱼号邮箱")])
async def test_how_the_package_reaches_the_platform(tmp_path, smtp, expect):
    env = {"BOT_SMTP_HOST": "127.0.0.1"} if smtp else {}
    d = await Driver.open(tmp_path, **env)
    try:
        r = await d.say("材料包怎么发给我")
        assert expect in r["text"] and "线上反馈" in r["text"]
    finally:
        await d.close()


async def test_the_same_prompt_pasted_again_at_the_offer_is_not_an_answer(driver):
    await driver.say("人脸与公安网照片不一致")
    for again in ("人脸与公安网照片不一致", "人脸与公安网照片不一致,请确保是账户本人操作"):  # the second holds a "是"
        r = await driver.say(again)
        assert r["state"] == "appeal_offer" and "还是“人脸与公安网照片不一致" in r["text"] and "需要" in r["text"]
    assert (await driver.say("需要"))["state"] == "route"


async def test_progress_right_after_the_appeal_began(driver):
    await driver.say("人脸与公安网照片不一致")
    await driver.say("需要")
    r = await driver.say("进度")
    assert r["state"] == "route" and "申诉刚开始" in r["text"] and "线上反馈" in r["text"]
    assert "没有进行中的申诉" not in r["text"]
