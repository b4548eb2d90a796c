"""Reading a creator's message: commands, yes/no with qualifiers, questions (FAQ), small talk.

Unit tests of `bot.matching.intents.Reader` on the real knowledge base; the dialog's use of a
reading in each waiting state is in test_dialog_understanding.py.
"""
import pytest


@pytest.fixture(scope="module")
def reader(kb):
    from bot.matching.intents import Reader

    return Reader(kb)


@pytest.mark.parametrize("text", ["需要，谢谢你", "好啊，麻烦帮我弄一下", "要的要的", "需要，麻烦了", "好呀开始吧",
                                  "有的，我看见了", "嗯嗯", "可以的", "ＯＫ", "好滴", "對的"])
def test_affirm(reader, text):
    r = reader.read(text)
    assert r.polarity is True and not r.unsure, r


@pytest.mark.parametrize("text", ["不用啦，我自己来", "暂时不需要", "暂时不用", "我没看到有这个", "后台找了半天没找到",
                                  "没有", "否", "不是军人", "好的，不过暂时不需要", "算了", "no", "木有"])
def test_deny(reader, text):
    r = reader.read(text)
    assert r.polarity is False, r


def test_qualifiers_are_read_alongside_the_answer(reader):
    r = reader.read("暂时不用")
    assert r.polarity is False and r.has("not_now")
    r = reader.read("需要，谢谢你")
    assert r.polarity is True and r.has("thanks")


@pytest.mark.parametrize("text", ["不知道在哪看", "不清楚", "我也不确定", "在哪里看"])
def test_unsure_is_neither_yes_nor_no(reader, text):
    r = reader.read(text)
    assert r.unsure and r.polarity is None, r


@pytest.mark.parametrize("text", ["不好意思", "iPhone 13", "张三", "10.38.0", "无法识别"])
def test_words_inside_other_words_are_no_answer(reader, text):
    # 不好意思 is not 不 + 好; "iphone" holds no "n"; 无法 is not 无.
    assert reader.read(text).polarity is None


@pytest.mark.parametrize("text,intent", [
    ("好的 多谢", "thanks"), ("你好，在不在", "greeting"), ("你是谁呀", "who_are_you"), ("能不能转人工", "human"),
    ("视频我晚点再录，现在在上班", "not_now"), ("有没有真人可以问", "human"), ("什么提示都没有", "no_prompt"), ("认证失败也不说原因", "no_prompt"),
    ("请问大鱼号的收益多久到账", "out_of_scope"), ("文章被限流了怎么申诉", "out_of_scope"),
])
def test_intents(reader, text, intent):
    assert reader.read(text).has(intent)


@pytest.mark.parametrize("text,command", [
    ("取消", "cancel"), ("请帮我取消吧", "cancel"), ("删除我得资料", "delete"), ("进度", "progress"),
    ("暂停一下", "pause"), ("详细", "details"), ("原文", "details"), ("继续", "resume"), ("跳过", "skip"),
])
def test_commands(reader, text, command):
    assert reader.read(text).command == command


def test_a_sentence_containing_a_command_word_is_not_that_command(reader):
    assert reader.read("我取消了之前的认证然后重新认证还是失败").command is None


@pytest.mark.parametrize("text,faq,item", [
    ("大鱼号名称是指什么", "what_item", "account_name"),
    ("为啥还要身份证号码", "why_item", "id_number"),
    ("身份证号发给你安全吗", "privacy", "id_number"),
    ("直接手机录屏可以吗", "screen_recording", None),
    ("能用录平吗", "screen_recording", None),  # a homophone typo of 录屏
    ("申诉的话都要准备啥", "materials", None),
    ("邮箱地址是多少", "mailbox", None),
    ("申诉多久能有结果", "review_time", None),
    ("视频要拍哪些内容", "video_requirements", "failure_video"),
    ("线上反馈入口在哪里看", "where_item", "route"),
    ("淘宝版本号在哪里看", "where_item", "taobao_version"),
    ("这个填什么呢", "what_item", "this"),
    ("提交之后呢", "after_submit", None),
    ("你们会保存我的身份证号多久", "privacy", "id_number"),  # two cues (保存, 多久): tokens decide
])
def test_faq(reader, text, faq, item):
    r = reader.read(text)
    assert r.faq == faq, r
    if item:  # the item the answer is about
        assert r.item == item, r
    assert r.question or faq == "after_submit"


@pytest.mark.parametrize("text", ["小鱼的美食日记", "欧阳娜娜", "iPhone 13", "13800138000", "人脸与公安网照片不一致"])
def test_values_are_not_questions(reader, text):
    r = reader.read(text)
    assert not r.question and r.faq is None, r


@pytest.mark.parametrize("text", ["可以写小名吗？", "为什么", "这个怎么填", "要填哪个名字呢", "身份证号是哪个"])
def test_questions_are_recognised(reader, text):
    assert reader.read(text).question


def test_consent_is_told_apart_from_a_factual_yes(reader):
    assert reader.read("好的 帮我弄吧").consent_only
    assert not reader.read("好的，有的").consent_only and reader.read("好的，有的").polarity is True
    assert not reader.read("有的").consent_only
