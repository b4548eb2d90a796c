"""The dialog's knowledge: intents, FAQ (grounded in the seed), the responses catalogue, chat remedies."""
import re
import shutil

import pytest

from bot.kb import KnowledgeError, load_knowledge
from bot.kb.responses import RESPONSES, placeholders, render
from conftest import KNOWLEDGE, SEED


def _plain(text: str) -> str:
    return re.sub(r"\s+", "", text).replace("（", "(").replace("）", ")")


SEED_TEXT = _plain(SEED.read_text(encoding="utf-8"))


# -- FAQ grounding ---------------------------------------------------------------------------
def test_every_faq_answer_is_grounded(kb):
    for f in kb.faq:
        grounded = bool(f.grounds) or bool(f.settings) or f.behaviour
        assert grounded or f.seed_silent, f"FAQ {f.id}: says nothing of where its facts come from"
        for quote in f.grounds:
            assert _plain(quote) in SEED_TEXT, f"FAQ {f.id}: {quote!r} is not in the seed"
            assert _plain(quote) in _plain(f.answer) or f.id == "materials", f"FAQ {f.id}: answer lacks {quote!r}"
        for name in f.settings:
            assert "{" + name + "}" in f.answer, f"FAQ {f.id}: setting {name} not shown"
        if f.seed_silent:
            # the source says nothing: the answer says so and points to the platform's people
            assert "没有写明" in f.answer and "在线人工客服" in f.answer


def test_materials_answer_lists_both_routes_in_the_seeds_order(kb):
    from bot.dialog.flow import Dialog

    faq = next(f for f in kb.faq if f.id == "materials")
    d = Dialog.__new__(Dialog)
    d.kb = kb
    from bot.settings import load_settings

    d.settings = load_settings(env={})
    text = render(faq.answer, **d._faq_fields(None))
    seed_list = re.search(r"所需材料:(①大鱼号名称.*?联系方式)", SEED_TEXT).group(1)
    labels = re.findall(r"[①-⑬]([^;。]+)", seed_list)
    assert len(labels) == 13
    email_part = text[text.index("13 项"):]
    positions = [email_part.index(label) for label in labels]
    assert positions == sorted(positions)


def test_item_answers_exist_for_every_item(kb):
    for route in kb.routes.values():
        for m in route.materials:
            item = kb.items[m.slot]
            assert item.ask and item.why, m.slot


def test_seed_silent_answers_invent_no_time():
    text = (KNOWLEDGE / "faq.yaml").read_text(encoding="utf-8")
    assert not re.search(r"\d+\s*(个)?工作日|\d+\s*天内", text)


# -- chat remedies ---------------------------------------------------------------------------
def test_chat_remedies_are_short_and_without_cross_references(kb):
    for g in kb.groups.values():
        assert g.chat, f"group {g.name} has no chat rendering"
        for bad in ("上述", "(1-10)", "(12-13)", "1-15", "。;"):
            assert bad not in g.chat, (g.name, bad)
        assert len(render(g.chat, appeal_email="(appeal@example.com)", name="【张三】")) <= 300, g.name


def test_seed_texts_are_kept_word_for_word(kb):
    # the chat renderings are additions: every remedy is still the seed's own text
    for g in kb.groups.values():
        for line in g.remedy.replace("{appeal_email}", "").splitlines():
            assert _plain(line)[:20] in SEED_TEXT, (g.name, line)


# -- the responses catalogue -----------------------------------------------------------------
def test_catalogue_holds_every_response_the_code_uses(kb):
    assert set(kb.responses) == set(RESPONSES)
    source = "".join(p.read_text(encoding="utf-8") for p in (KNOWLEDGE.parent / "bot" / "dialog").glob("*.py"))
    used = set(re.findall(r'self\.r\(\s*"([a-z_]+)"', source))
    used |= {f"route_{r}" for r in ("online", "email")}
    assert used <= set(RESPONSES), used - set(RESPONSES)


def test_flow_has_no_chinese_sentences_of_its_own():
    source = (KNOWLEDGE.parent / "bot" / "dialog" / "flow.py").read_text(encoding="utf-8")
    code = "\n".join(line for line in source.splitlines()
                     if not line.strip().startswith("#") and '"""' not in line)
    code = re.sub(r'""".*?"""', "", code, flags=re.S)
    strings = [s for s in re.findall(r'"([^"\n]*[\u4e00-\u9fff][^"\n]*)"', code) if "\\" not in s]  # not regexes
    # only short labels assembled into catalogue texts may remain (kinds, units, summary parts)
    assert all(len(s) <= 12 for s in strings), [s for s in strings if len(s) > 12]


def _copy(tmp_path):
    d = tmp_path / "kb"
    shutil.copytree(KNOWLEDGE, d)
    return d


def _edit(d, name, old, new):
    p = d / name
    text = p.read_text(encoding="utf-8")
    assert old in text, old
    p.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[:text.index(old)].count("\n") + 1


@pytest.mark.parametrize("old,new,reason", [
    ("  recorded_id: \"已记录身份证号 {masked}。\"", "  recorded_id: \"已记录身份证号 {id}。\"",
     "unknown placeholder {id}"),
    ("  resume_item: \"接着刚才的:请发送【{item}】。\"", "  resume_item: \"接着刚才的:请发送下一项。\"",
     "missing placeholder {item}"),
    ("  updated: 已更新。", "  updatd: 已更新。", "unknown response 'updatd'"),
    ("  skipped: 已跳过。", "  skipped: 已跳过 {。", "bad placeholder"),
])
def test_catalogue_errors_name_file_and_line(tmp_path, old, new, reason):
    d = _copy(tmp_path)
    line = _edit(d, "responses.yaml", old, new)
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(d)
    assert reason in str(err.value)
    assert err.value.file.endswith("responses.yaml") and err.value.line == line


def test_a_missing_response_is_a_load_error(tmp_path):
    d = _copy(tmp_path)
    _edit(d, "responses.yaml", "  updated: 已更新。\n", "")
    with pytest.raises(KnowledgeError, match="response 'updated' is missing"):
        load_knowledge(d)


@pytest.mark.parametrize("name,old,new,reason", [
    ("faq.yaml", "answer: \"{item_why}\"", "answer: \"{item_when}\"", "unknown placeholder {item_when}"),
    ("intents.yaml", "  thanks:\n    cues:", "  thanks:\n    clues:", "cues"),
    ("intents.yaml", "  pause: [", "  paused: [", "command 'pause' is not defined"),
    ("faq.yaml", "  - id: mailbox", "  - id: privacy", "duplicate FAQ id 'privacy'"),
    ("prompts.yaml", "你认证的账号主体{name}状态", "你认证的账号主体{who}状态", "unknown placeholder {who}"),
])
def test_dialog_knowledge_errors(tmp_path, name, old, new, reason):
    d = _copy(tmp_path)
    _edit(d, name, old, new)
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(d)
    assert reason in str(err.value)


def test_response_placeholders_are_the_code_fields(kb):
    for name, text in kb.responses.items():
        allowed = {f.rstrip("!") for f in RESPONSES[name]}
        assert placeholders(text) <= allowed, name


async def test_intents_and_responses_reload_without_restart(tmp_path):
    from driver import Driver

    d = _copy(tmp_path)
    driver = await Driver.open(tmp_path, BOT_ADMINS="boss", BOT_KNOWLEDGE_DIR=str(d))
    try:
        await driver.say("人脸与公安网照片不一致,请确保是账户本人操作")
        r = await driver.say("走你")  # not an answer the base knows
        assert r["awaiting"] == "appeal_offer"
        _edit(d, "intents.yaml", "    cues: [是, 是的,", "    cues: [走你, 是, 是的,")
        _edit(d, "responses.yaml", "  thanks: 不客气!实名认证还有问题随时找我。", "  thanks: 不客气呀!")
        r = await driver.say("#reload", user="boss")
        assert "知识库已重载" in r["text"]
        r = await driver.say("走你")
        assert r["awaiting"] == "route"
        r = await driver.send(**{"from": "u2", "text": "谢谢"})
        assert r[-1]["text"] == "不客气呀!"
    finally:
        await driver.close()
