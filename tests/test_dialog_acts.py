"""Several acts in one message, quitting and correcting in plain words in every waiting state,
choices by ordinal, and what the bot did not understand recorded for operators."""
from datetime import datetime, timedelta

import pytest

from bot.dialog.acts import answer_then_question, choice_number, edit_target
from bot.matching.intents import Reader

P2 = "人脸与公安网照片不一致,请确保是账户本人操作"
P12 = "此主体证件号最多可关联1个人个人类型大鱼号,请更换其他有效主体重新认证"


@pytest.mark.parametrize("text,count,want", [
    ("2", 3, 2), ("第二个", 3, 2), ("好像是第二个吧", 3, 2), ("第2个", 3, 2), ("选3", 3, 3), ("二", 3, 2),
    ("0", 3, 0), ("第十个", 3, None), ("4", 3, None), ("都不是", 3, None), ("110105194912310021", 3, None),
    ("13800138000", 3, None), ("第一项吧", 5, 1),
])
def test_choice_numbers(text, count, want):
    assert choice_number(text, count) == want


def test_answer_then_question(kb):
    reader = Reader(kb)
    split = answer_then_question(reader, "可以，那材料要准备些啥")
    assert split is not None and split.answer.polarity is True and split.question.question
    assert answer_then_question(reader, "行，不过要准备哪些东西啊") is not None
    assert answer_then_question(reader, "可以申诉吗") is None  # one act: a question
    assert answer_then_question(reader, "好的") is None


def test_edit_targets(kb):
    reader = Reader(kb)
    slots = ["account_name", "real_name", "id_number"]
    assert edit_target(reader.read("姓名填错了 要改"), "姓名填错了 要改", slots) == "real_name"
    assert edit_target(reader.read("改一下身份证号"), "改一下身份证号", slots) == "id_number"
    assert edit_target(reader.read("修改 2"), "修改 2", slots) == "real_name"
    assert edit_target(reader.read("要改"), "要改", slots) is None


# -- a yes/no and a question in one message, in each yes/no state --------------------------------
async def test_consent_and_a_question_at_the_offer(driver):
    r = await driver.say_all(P2, "可以，那材料要准备些啥")
    assert r["awaiting"] == "route" and "手持身份证正面照片" in r["text"]
    assert r["text"].rstrip().endswith("回复“有”或“没有”。")  # the answer, then what comes next


async def test_a_route_answer_and_a_question(driver):
    r = await driver.say_all(P2, "需要", "没有，那要多久能审核完")
    assert r["awaiting"] == "account_name"


async def test_a_value_and_a_question_at_an_item(driver):
    r = await driver.say_all(P2, "需要", "没有", "叫 数码老李，对了后面要拍视频吗")
    assert r["awaiting"] == "real_name"
    assert "已记录【大鱼号名称】:数码老李" in r["text"] and "正脸" in r["text"]


async def test_two_values_in_one_message_are_both_kept(driver):
    r = await driver.say_all(P2, "需要", "没有", "小王说车")
    r = await driver.say("我叫张三，身份证号是 11010519491231002X")
    assert "已记录【姓名】:张三" in r["text"] and "已记录身份证号 110105********002X" in r["text"]
    assert r["awaiting"] not in ("real_name", "id_number")  # on to the next item, nothing asked twice
    assert "11010519491231002X" not in r["text"]  # the ID number is only echoed masked


async def test_three_values_by_their_labels_and_a_bad_one_said(driver):
    r = await driver.say_all(P2, "需要", "没有")
    r = await driver.say("我的大鱼号叫小王说车，名字是张三，手机型号 iPhone 15 Pro")
    assert "【大鱼号名称】:小王说车" in r["text"] and "【姓名】:张三" in r["text"]
    assert r["awaiting"] == "id_number"
    r = await driver.say_all(P2, "需要", "没有", "小王说车", user="u2")
    r = await driver.say("姓名：李四，身份证 110105194912310021", "u2")  # a wrong check digit
    assert "【姓名】:李四" in r["text"] and "【身份证号码】" in r["text"]  # the bad one is said...
    assert r["awaiting"] == "id_number"  # ...not kept, and asked for next
    assert "110105194912310021" not in r["text"]


async def test_asking_for_the_admins_at_an_item_is_a_request_for_a_person(driver):
    r = await driver.say_all(P2, "需要", "没有", "暂停", "找管理员")
    assert "没找到" not in r["text"] and "人工" in r["text"]  # not read as the awaited value
    assert r["awaiting"] == "account_name"


async def test_a_photo_whose_question_a_correction_interrupted_is_asked_again(driver, media):
    await driver.say_all(P2, "需要", "没有", "我的大鱼号叫 老李数码，我叫李雷")
    r = (await driver.send(**{"from": "u1", "image": str(media["front"])}))[-1]
    assert r["awaiting"] == "file_slot"
    r = await driver.say_all("姓名写错了", "我叫李磊")
    assert r["awaiting"] == "file_slot" and "第 1 个图片" in r["text"]  # not forgotten in the queue
    r = await driver.say("2")
    assert r["awaiting"] == "id_number"
    slots = driver.engine.store.load("u1", "u1").data["slots"]
    assert slots["real_name"] == "李磊" and isinstance(slots["id_front_photo"], dict)


# -- quit, pause and edit in every waiting state ---------------------------------------------------
@pytest.mark.parametrize("setup", [
    (P2, "需要"),  # route
    (P2, "需要", "没有"),  # a text item
    (P2, "需要", "有"),  # a file item
])
async def test_quit_in_plain_words_asks_once_then_cancel_or_pause(driver, setup):
    r = await driver.say_all(*setup)
    before = r["awaiting"]
    r = await driver.say("哎 不整了 太麻烦")
    assert r["awaiting"] == "quit_confirm" and "取消" in r["text"] and "暂停" in r["text"]
    r = await driver.say("暂停")
    assert r["awaiting"] == before and "暂停" in r["text"]
    r = await driver.say("放弃了")
    assert r["awaiting"] == "quit_confirm"
    r = await driver.say("取消")
    assert r["awaiting"] is None and "已取消" in r["text"]


async def test_quit_at_the_offer_is_a_no(driver):
    r = await driver.say_all(P2, "不整了")
    assert r["awaiting"] is None


async def test_quit_at_the_summary_and_in_a_file_question(driver, media):
    from driver import online_answers

    answers = online_answers(media)
    r = await driver.say_all(P2, "需要", "有")
    while r["awaiting"] != "confirm":
        r = (await driver.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
    r = await driver.say("算了不弄了 太折腾")
    assert r["awaiting"] == "quit_confirm" and "4 项" in r["text"]
    r = await driver.say("继续")
    assert r["awaiting"] == "confirm"


async def test_edit_mid_collection_returns_to_where_the_creator_was(driver):
    r = await driver.say_all(P2, "需要", "没有", "小鱼的美食日记", "欧阳娜娜")
    assert r["awaiting"] == "id_number"
    r = await driver.say("改一下大鱼号名称")
    assert r["awaiting"] == "account_name"
    r = await driver.say("「小王说车」")
    assert r["awaiting"] == "id_number" and "小王说车" in r["text"]
    r = await driver.say("修改 2")  # by number, during collection too
    assert r["awaiting"] == "real_name"
    r = await driver.say("欧阳娜")
    assert r["awaiting"] == "id_number"
    conv = driver.engine.store.load("u1", "u1")
    assert conv.data["slots"]["account_name"] == "小王说车" and conv.data["slots"]["real_name"] == "欧阳娜"


async def test_edit_at_the_summary_by_name(driver, media):
    from driver import email_answers

    answers = email_answers(media)
    r = await driver.say_all(P2, "需要", "没有")
    while r["awaiting"] != "confirm":
        r = (await driver.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
    r = await driver.say("手机型号写错了")
    assert r["awaiting"] == "phone_model"
    r = await driver.say("华为 Mate 60 Pro")
    assert r["awaiting"] == "confirm" and "华为 Mate 60 Pro" in r["text"]


# -- choices stay open -----------------------------------------------------------------------------
async def test_a_choice_list_stays_open_after_a_miss(driver):
    r = await driver.say("一个身份证只能绑一个号")
    assert r["awaiting"] == "choice"
    r = await driver.say("啊这")
    assert r["awaiting"] == "choice"
    r = await driver.say("好像是第一个吧")
    assert r["prompt_id"] == 12


# -- beyond the collection -------------------------------------------------------------------------
async def test_appeal_after_a_prompt_without_appeal_says_what_it_offers(driver):
    await driver.say(P12)
    r = await driver.say("那这个能申诉不")
    assert "注销" in r["text"] and "没看懂" not in r["text"] and r["prompt_id"] == 12
    r = await driver.say("申诉")
    assert "注销" in r["text"]
    r = await driver.say("注销另一个号要怎么弄")
    assert "在线人工客服" in r["text"] and "帮不上" not in r["text"]


async def test_a_dm_from_the_group_continues_the_group_s_prompt(driver):
    r = await driver.send(room="r1", **{"from": "u1"}, mention=True, text="@助手 " + P2)
    assert r[-1]["prompt_id"] == 2
    r = await driver.say("你好 群里让我来私聊你")
    assert r["awaiting"] == "appeal_offer" and "人脸与公安网照片不一致" in r["text"]
    r = await driver.say("你好 群里让我来私聊你", user="u2")  # nobody of the group: a greeting
    assert r["awaiting"] is None and "提示语" in r["text"]


async def test_an_appeal_request_in_a_group_points_to_the_dm(driver):
    r = await driver.send(room="r1", **{"from": "u1"}, mention=True, text="@助手 弄了好几次还是不行 要申诉 帮我弄下")
    assert len(r) == 1 and "私聊" in r[0]["text"] and r[0]["mention"]


async def test_a_reminder_at_the_route_question(driver):
    await driver.say_all(P2, "需要")
    t0 = driver.clock
    out = await driver.send(tick=(t0 + timedelta(minutes=31)).isoformat())
    assert len(out) == 1 and "线上反馈" in out[0]["text"]


# -- not understood while waiting: recorded for operators; handled small talk is not -------------------
async def test_what_was_not_understood_while_waiting_is_recorded(driver):
    await driver.say_all(P2, "需要", "没有", "小鱼的美食日记")
    r = await driver.say("我回来了 接着弄吧")
    assert r["awaiting"] == "real_name"
    r = await driver.say("天气不错啊今天出太阳")
    assert r["awaiting"] == "real_name" and "已记录" not in r["text"]
    await driver.say("你好", user="u9")  # a greeting when idle: handled, not unmatched
    await driver.say("谢谢", user="u9")
    rows = driver.engine.store.top_unmatched_all(datetime(2000, 1, 1).astimezone(), limit=50)
    waiting = [r for r in rows if r["kind"] == "waiting"]
    assert [(r["text"], r["awaiting"]) for r in waiting] == [("天气不错啊今天出太阳", "real_name")]
    assert not [r for r in rows if r["kind"] == "idle" and r["text"] in ("你好", "谢谢")]


async def test_the_awaited_video_sent_while_a_file_question_is_open_fills_its_item(driver, media):
    r = await driver.say_all(P2, "需要", "有")
    assert r["awaiting"] == "failure_video"
    r = (await driver.send(**{"from": "u1", "image": str(media["back"])}))[-1]  # a photo first: kept, asked
    assert r["awaiting"] == "file_slot"
    r = (await driver.send(**{"from": "u1", "video": str(media["video"])}))[-1]  # then the awaited video
    assert r["awaiting"] == "file_slot" and "实名认证失败" in r["text"]  # taken; the question stays open
    r = await driver.say("3")  # the photo: 单独身份证反面照片
    assert r["awaiting"] == "id_handheld_photo"  # the video is in; on to the next item
    slots = driver.engine.store.load("u1", "u1").data["slots"]
    assert slots["failure_video"]["kind"] == "video" and slots["id_back_photo"]["kind"] == "image"


async def test_discarding_the_asked_file_goes_on_when_the_awaited_item_was_filled_meanwhile(driver, media):
    await driver.say_all(P2, "需要", "有")
    await driver.send(**{"from": "u1", "image": str(media["back"])})
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    r = await driver.say("0")
    assert r["awaiting"] == "id_handheld_photo" and "丢弃" in r["text"]
