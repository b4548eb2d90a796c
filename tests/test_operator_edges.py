"""The operator's rough edges (issue #21 part 4): Chinese status names in #appeals, notes joined
without doubled punctuation, #reload after the file watcher, 转人工 once an hour, 你 throughout,
the 确认 reply saying its data-retention sentence once."""
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from bot.kb.responses import render
from conftest import KNOWLEDGE
from driver import Driver, email_answers, online_answers, run_appeal

NOW = datetime(2026, 12, 5, 16, 41, tzinfo=timezone.utc)
ENGLISH_STATUSES = re.compile(r"\b(ready|queued|sent|failed|replied|reviewing|resolved|rejected|need_more)\b")


async def test_appeals_lists_statuses_in_chinese(tmp_path, media):
    d = await Driver.open(tmp_path, BOT_ADMINS="boss")
    try:
        first, _ = await run_appeal(d, email_answers(media), "没有")
        second, _ = await run_appeal(d, online_answers(media), "有", user="u2")
        d.engine.change_appeal_status(second["appeal_id"], "need_more", by="cli:ops")
        text = (await d.say("#appeals", user="boss"))["text"]
        rows = {line.split(" | ")[0]: line for line in text.splitlines()[1:]}
        assert "| 待提交 |" in rows[first["appeal_id"]] and "| 需补充 |" in rows[second["appeal_id"]]
        assert not ENGLISH_STATUSES.search(text), text
    finally:
        await d.close()


@pytest.mark.parametrize("note", ["手持照片不清晰。", "手持照片不清晰", "手持照片不清晰!", "手持照片不清晰.", "请补拍?"])
async def test_a_status_note_is_joined_without_doubled_punctuation(tmp_path, media, note):
    d = await Driver.open(tmp_path, BOT_ADMINS="boss")
    try:
        final, _ = await run_appeal(d, email_answers(media), "没有")
        appeal_id = final["appeal_id"]
        reply = await d.say(f"#appeal {appeal_id} 审核中 {note}", user="boss")
        told = [u.text for u in d.engine.store.unsent() if u.chat == "u1" and u.reply_to is None]
        progress = (await d.say("进度"))["text"]
        for text in (reply["text"], told[-1], progress):
            assert "手持照片不清晰" in text or "请补拍" in text
            assert not re.search(r"[。！？!?.][。.,，]", text), text
    finally:
        await d.close()


def test_render_drops_the_texts_stop_after_a_value_that_ends_a_sentence():
    assert render("说明:{note}。", note="照片。") == "说明:照片。"
    assert render("说明:{note}。后面", note="照片?") == "说明:照片?后面"
    assert render("说明:{note}。", note="照片") == "说明:照片。"
    assert render("版本 {v}。", v="V10.38.0") == "版本 V10.38.0。"
    assert render("{a}{{b}} {n:>3}", a="x", n=7) == "x{b}   7"


async def test_reload_after_the_file_watcher_says_it_is_already_up_to_date(tmp_path):
    kdir = tmp_path / "knowledge"
    shutil.copytree(KNOWLEDGE, kdir)
    d = await Driver.open(tmp_path, BOT_ADMINS="boss", BOT_KNOWLEDGE_DIR=str(kdir))
    try:
        r = await d.say("#reload", user="boss")  # nothing changed since start
        version = d.engine.snapshot.kb.version
        assert r["text"].startswith(f"知识库已是最新版本 {version},启动时加载于 ") and "文件没有变化" in r["text"]
        path = kdir / "responses.yaml"
        path.write_text(path.read_text("utf-8").replace("  thanks: 不客气!实名认证还有问题随时找我。",
                                                          "  thanks: 不客气呀!"), "utf-8")
        await d.engine.tick()  # the watcher sees the change and reloads
        new = d.engine.snapshot.kb.version
        assert new != version and d.engine.snapshot.loaded_by == "file change"
        r = await d.say("#reload", user="boss")
        at = d.engine.snapshot.loaded_at.astimezone(timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
        assert r["text"] == f"知识库已是最新版本 {new},上次由文件变动重新加载于 {at}。"
        r = await d.say("#reload", user="boss")  # again: the last load was this admin's
        assert r["text"].startswith(f"知识库已是最新版本 {new},上次由管理员 boss 重新加载于 ")
    finally:
        await d.close()


async def test_a_second_handoff_within_the_hour_does_not_notify_the_admins_again(tmp_path):
    d = await Driver.open(tmp_path, BOT_HANDOFF_TO="ops1,ops2")
    d.clock = NOW
    try:
        first = await d.send(**{"from": "u1", "text": "转人工"})
        assert sorted(r["chat"] for r in first if r["chat"] != "u1") == ["ops1", "ops2"]
        assert "已经通知了社群管理员" in first[0]["text"]
        d.clock = NOW + timedelta(minutes=40)
        again = await d.send(**{"from": "u1", "text": "我要找人工客服"})
        assert [r["chat"] for r in again] == ["u1"]
        assert "已经通知过社群管理员" in again[0]["text"] and "一小时内" in again[0]["text"]
        other = await d.send(**{"from": "u2", "text": "转人工"})  # another creator: told
        assert sorted(r["chat"] for r in other if r["chat"] != "u2") == ["ops1", "ops2"]
        d.clock = NOW + timedelta(minutes=101)  # an hour after the last notification: told again
        later = await d.send(**{"from": "u1", "text": "转人工"})
        assert sorted(r["chat"] for r in later if r["chat"] != "u1") == ["ops1", "ops2"]
        assert "在等 空闲" in later[-1]["text"]
    finally:
        await d.close()


async def test_the_handoff_note_says_what_the_bot_waits_for_in_words(tmp_path):
    d = await Driver.open(tmp_path, BOT_HANDOFF_TO="ops1")
    try:
        await d.say("人脸与公安网照片不一致,请确保是账户本人操作")
        await d.say("是")
        note = [r for r in await d.send(**{"from": "u1", "text": "转人工"}) if r["chat"] == "ops1"]
        assert "在等 线上反馈入口" in note[0]["text"]
        d.clock += timedelta(hours=2)
        await d.say("没有")
        note = [r for r in await d.send(**{"from": "u1", "text": "转人工"}) if r["chat"] == "ops1"]
        assert "在等 大鱼号名称" in note[0]["text"] and not re.search(r"[a-z_]{4,}", note[0]["text"])
    finally:
        await d.close()


def _unquoted(text: str) -> str:
    return re.sub(r"“[^”]*”", "", text)


def test_the_bot_says_ni_not_nin(kb):
    """Every text the bot says in its own words; the platform's text is quoted (“…”) or shown as
    平台原文 (详细), and the creators' own words are theirs."""
    texts = {f"responses.{k}": v for k, v in kb.responses.items()}
    texts.update({f"faq.{f.id}": f.answer for f in kb.faq})
    texts.update({f"group.{g.name}.chat": g.chat for g in kb.groups.values() if g.chat})
    texts.update({f"item.{i.slot}": " ".join((i.ask, i.why, i.what, i.where)) for i in kb.items.values()})
    offenders = {k: v for k, v in texts.items() if "您" in _unquoted(v)}
    assert not offenders, offenders


# 您 in the code: stop words and name characters the reader knows, and the emails to the platform.
NIN_ALLOWED = {"matching/matcher.py", "dialog/extract.py", "appeals/package.py", "appeals/supplement.py"}


def test_no_reply_text_in_the_code_says_nin():
    """Texts some code still says itself (validators' errors, the WeChat transport's notices)."""
    from conftest import ROOT

    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "bot").rglob("*.py")
                 if "您" in p.read_text("utf-8") and str(p.relative_to(ROOT / "bot")) not in NIN_ALLOWED]
    assert not offenders


@pytest.mark.parametrize("route", ["online", "email"])
async def test_the_confirm_reply_says_retention_once(tmp_path, media, route):
    d = await Driver.open(tmp_path)
    try:
        answers = online_answers(media) if route == "online" else email_answers(media)
        final, _ = await run_appeal(d, answers, "有" if route == "online" else "没有")
        assert final["appeal_id"]
        text = final["text"]
        assert text.count("删除我的资料") == 1 and text.count("加密保存") == 1, text
        assert "您" not in text
    finally:
        await d.close()
