"""The bot understands every reply it suggests.

Each “…” that a text of the catalogue (knowledge/responses.yaml, faq.yaml's answers and item texts)
tells the creator to send (after 回复 / 发 / 说 / 告诉我) is collected; each must have a meaning
here (a new suggested word without one fails), and is then sent in the state where that text is
said, through the real engine: it must do what the text promises.
"""
import re

import pytest

from bot.kb import load_knowledge
from conftest import KNOWLEDGE

P2 = "人脸与公安网照片不一致,请确保是账户本人操作"
_SUGGESTED = re.compile(r"(?:回复|发|说|告诉我)((?:“[^”]+”(?:或|、|,)?)+)")


def suggested_words() -> set[str]:
    kb = load_knowledge(KNOWLEDGE)
    texts = list(kb.responses.values())
    texts += [f.answer for f in kb.faq]
    texts += [x for item in kb.items.values() for x in (item.ask, item.why, item.what, item.where) if x]
    words = set()
    for text in texts:
        for m in _SUGGESTED.finditer(text):
            words.update(re.findall(r"“([^”]+)”", m.group(1)))
    return words


# Words that are commands in every state: the command they must be read as.
COMMANDS = {"暂停": "pause", "取消": "cancel", "进度": "progress", "继续": "resume", "详细": "details",
            "删除我的资料": "delete", "帮助": "help", "申诉": "appeal", "跳过": "skip", "补充": "supplement"}
# Words whose meaning depends on the state: (how to get there, then what must follow the word).
SETUPS = {
    "appeal_offer": [P2],
    "route": [P2, "需要"],
    "military": None,  # reached by walking the email route (below)
    "confirm": None,
}
STATE_WORDS = {
    "需要": ("appeal_offer", lambda r: r["awaiting"] == "route"),
    "不用": ("appeal_offer", lambda r: r["awaiting"] is None),
    "有": ("route", lambda r: r["awaiting"] in ("failure_video", "id_handheld_photo")),
    "没有": ("route", lambda r: r["awaiting"] == "account_name"),
    "是": ("military", lambda r: r["awaiting"] == "military_docs"),
    "否": ("military", lambda r: r["awaiting"] == "contact"),
    "确认": ("confirm", lambda r: r.get("appeal_id")),
    "修改 3": ("confirm", lambda r: r["awaiting"] == "id_number"),
    "修改 1": ("confirm", lambda r: r["awaiting"] == "account_name"),
    "修改": ("confirm", lambda r: r["awaiting"] == "confirm" and "修改" in r["text"]),
    "确认删除": ("delete_confirm", lambda r: r["awaiting"] is None and "删除" in r["text"]),
    "0": ("file_slot", lambda r: r["awaiting"] == "account_name" and "丢弃" in r["text"]),
    "对": ("error_prompt", lambda r: r["awaiting"] == "taobao_screenshot"),
    "没有提示": ("idle", lambda r: r["prompt_id"] == 15),
    "转人工": ("idle", lambda r: "人工客服" in r["text"]),
    "改{item}": ("recorded_value", lambda r: r["awaiting"] == "account_name"),
    "改": ("recorded_value", lambda r: r["awaiting"] == "account_name"),
    "已提交": ("supplement_upload", lambda r: r["awaiting"] is None and "已记录" in r["text"]),
}


def test_every_suggested_word_has_a_meaning_here():
    unknown = sorted(suggested_words() - set(COMMANDS) - set(STATE_WORDS))
    assert unknown == [], f"suggested by the catalogue but not checked here: {unknown}"


def test_command_words_are_read_as_those_commands(kb):
    from bot.matching.intents import Reader

    reader = Reader(kb)
    for word, command in COMMANDS.items():
        assert reader.read(word).command == command, word


async def _reach(driver, media, state: str, user: str) -> None:
    from driver import email_answers

    answers = email_answers(media)
    if state == "idle":
        return
    if state == "supplement_upload":  # an online appeal, 需补充 of one photo, sent again: "已提交" when uploaded
        from driver import online_answers, run_appeal

        r, _ = await run_appeal(driver, online_answers(media), "有", user=user)
        driver.engine.change_appeal_status(r["appeal_id"], "need_more", by="test", items="id_back_photo")
        await driver.send(**{"from": user, "image": str(media["back"])})
        r = await driver.say("确认", user)
        assert r["awaiting"] == "supplement_upload", r
        return
    if state == "delete_confirm":
        await driver.say("删除我的资料", user)
        return
    r = await driver.say(P2, user)
    if state == "appeal_offer":
        return
    r = await driver.say("需要", user)
    if state == "route":
        return
    r = await driver.say("没有", user)
    if state in ("file_slot", "recorded_value"):
        if state == "file_slot":
            r = await driver.send(**{"from": user, "image": str(media["front"])})
            assert r[-1]["awaiting"] == "file_slot"
        else:
            r = await driver.say("我的大鱼号叫「小鱼的美食日记」", user)
            assert "已记录【大鱼号名称】" in r["text"], r
        return
    while r["awaiting"] != state and not (state == "military" and r["awaiting"] == "military"):
        r = (await driver.send(**{"from": user, **answers[r["awaiting"]]}))[-1]



@pytest.mark.parametrize("word", sorted(STATE_WORDS))
async def test_a_suggested_word_does_what_it_promises_where_it_is_suggested(driver, media, word):
    state, holds = STATE_WORDS[word]
    user = f"u-{abs(hash(word)) % 10_000}"
    if state == "confirm":
        from driver import email_answers

        answers = email_answers(media)
        await driver.say(P2, user)
        await driver.say("需要", user)
        r = await driver.say("没有", user)
        while r["awaiting"] != "confirm":
            r = (await driver.send(**{"from": user, **answers[r["awaiting"]]}))[-1]
    else:
        await _reach(driver, media, state, user)
    # “改”加项目名 / “改{item}”: the word with an item's name after it
    text = word.replace("{item}", "大鱼号名称") if word != "改" else "改大鱼号名称"
    r = await driver.say(text, user)
    assert holds(r), (word, state, r)
