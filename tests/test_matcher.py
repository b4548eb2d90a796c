"""The matcher: accuracy on the dev and holdout sets, tiers, normalisation, bad input."""
import json
import subprocess
import sys

import pytest

from bot.matching.normalize import clean
from conftest import DEV_SET, ROOT

HOLDOUT = ROOT / "tests" / "data" / "holdout_match.jsonl"


def evaluate(matcher, path):
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    positives = [r for r in rows if r["expect"]]
    negatives = [r for r in rows if not r["expect"]]
    correct = [r for r in positives if (m := matcher.match(r["text"])).tier != "none" and m.id in r["expect"]]
    neg_confident = [r["text"] for r in negatives if matcher.match(r["text"]).tier == "confident"]
    return len(correct) / len(positives), neg_confident


@pytest.mark.skipif(not DEV_SET.exists(), reason="shared/eval not beside the repo")
def test_dev_set_accuracy(matcher):
    accuracy, neg_confident = evaluate(matcher, DEV_SET)
    assert accuracy >= 0.97
    assert neg_confident == []


def test_holdout_set_accuracy(matcher):
    accuracy, neg_confident = evaluate(matcher, HOLDOUT)
    assert accuracy >= 0.95
    assert neg_confident == []


@pytest.mark.parametrize("text,pid", [
    ("人脸与公安网照片不一致,请确保是账户本人操作", 2),
    ("人臉與公安網照片不一致，請確保是賬戶本人操作", 2),  # traditional
    ("ＡＢＣ认证信息已超过入驻上限！！！", 13),  # full-width
    ("@大鱼小助手\u2005扫描二维码后提示“未知客户端”", 18),  # leading mention
    ("根据平台违规管理规则,您的认证主体【欧阳娜娜】,不可作为大鱼号的有效主体", 14),  # wildcard name
    ("姓名与身份证号不四配,请重新确认并再次认证", 6),  # OCR typo
    ("😭😭 验证失败，请确保是账户本人操作 🙏", 1),  # emoji around
])
def test_confident_matches(matcher, text, pid):
    r = matcher.match(text)
    assert (r.id, r.tier) == (pid, "confident")


@pytest.mark.parametrize("text", ["文章审核不通过", "企业认证需要什么材料", "上传视频一直卡住", "认证成功了", "今天天气不错"])
def test_near_misses_never_confident(matcher, text):
    assert matcher.match(text).tier != "confident"


def test_shared_clause_is_a_suggestion(matcher):
    r = matcher.match("请确保是账户本人操作")
    assert r.tier == "suggest"
    assert {r.id, r.alternatives[0]["id"]} == {1, 2}


@pytest.mark.parametrize("text", ["", "   \n\t", "😀😀😀🎉", "hello, how are you?", "\x00\x01\x02\x7f",
                                  "�" * 100, "a" * 1_000_000, "认证" * 500_000])
def test_bad_input_is_none_and_bounded(matcher, text):
    r = matcher.match(text)
    assert r.tier == "none" and r.id is None


def test_huge_input_with_prompt_at_start_still_matches(matcher):
    r = matcher.match("认证信息已超过入驻上限" + "哈" * 1_000_000)
    assert r.id == 13


def _run_match(lines: str, *args):
    return subprocess.run([sys.executable, "-m", "bot", "match", *args], input=lines, capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def test_match_cli_plain_lines():
    p = _run_match("人脸与公安网照片不一致\n求互关\n\n")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0]["id"] == 2 and rows[0]["group"] == "identity_check" and rows[0]["tier"] == "confident"
    assert set(rows[0]) == {"text", "id", "group", "tier", "score", "alternatives", "vague"}
    assert rows[0]["vague"] is False
    assert all({"id", "score"} == set(a) for a in rows[0]["alternatives"])
    assert rows[1]["tier"] == "none" and rows[1]["id"] is None and rows[1]["group"] is None
    assert rows[2]["text"] == "" and rows[2]["tier"] == "none"


def test_match_cli_jsonl():
    p = _run_match('{"text": "扫了码说是未知客户端"}\nnot json\n{"text": 5}\n', "--jsonl")
    assert p.returncode == 0
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert rows[0]["id"] == 18
    assert rows[1]["tier"] == "none" and "error" in rows[1]
    assert "line 2" in p.stderr


# -- information content, candidates, vague reports ------------------------------------------------
UNSEEN = ROOT / "bench" / "data" / "unseen_match.jsonl"
P14_WORDS = ("违规", "主体", "不可作为", "不能作为", "封", "拉黑")


def _proposed(result) -> list:
    """Every prompt a user could be shown: the answer and the alternatives of a suggestion."""
    return [i for i in [result.id, *(a["id"] for a in result.alternatives)] if i is not None]


@pytest.mark.parametrize("path", [DEV_SET, HOLDOUT, UNSEEN], ids=["dev", "holdout", "unseen"])
def test_no_positive_is_confidently_wrong(matcher, path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    wrong = [(r["text"], r["expect"], m.id) for r in rows if r["expect"]
             and (m := matcher.match(r["text"])).tier == "confident" and m.id not in r["expect"]]
    assert wrong == []


@pytest.mark.parametrize("text", ["失败提示", "实名认证失败提示", "认证时显示失败提示", "认证失败提示怎么处理",
                                  "提示失败了，怎么回事"])
def test_generic_clause_is_no_evidence(matcher, text):
    # Prompt 14's clause "失败提示" only says that something failed: it must not carry a match.
    r = matcher.match(text)
    assert 14 not in _proposed(r)
    assert r.tier == "none"


def test_clause_weight_follows_its_information(kb):
    # The same mechanism for any prompt: give prompt 17 a leading clause made of generic words only.
    import dataclasses

    from bot.matching import Matcher

    p17 = kb.prompt(17)
    changed = dataclasses.replace(p17, text="实名认证失败:" + p17.text)
    m = Matcher(dataclasses.replace(kb, prompts=tuple(changed if p.id == 17 else p for p in kb.prompts)))
    weights = {v.text: v.weight for e in m._entries if e.id == 17 for v in e.variants}
    assert weights["实名认证失败"] < 0.7 < weights["无法生成实名认证二维码"] == 1.0
    assert m.match("实名认证失败了").tier == "none"
    assert (m.match("无法生成实名认证二维码").id, m.match("无法生成实名认证二维码").tier) == (17, "confident")


@pytest.mark.parametrize("text", [
    "我的实名认证失败了", "认证老是不成功", "实名认证失败怎么办", "认证一直过不去", "认证失败，求助",
    "淘宝认证的时候app直接闪退了，什么提示都没有", "认证失败也不说原因，直接又回到第一步了", "大鱼号实名认证一直失败",
    "为什么我的实名认证总是失败", "认证时显示失败提示", "刷脸一直失败", "视频上传失败", "实名认证没过咋整",
])
def test_prompt_14_needs_its_own_words(matcher, text):
    assert not any(w in text for w in P14_WORDS)
    assert 14 not in _proposed(matcher.match(text))


@pytest.mark.parametrize("path", [DEV_SET, HOLDOUT, UNSEEN], ids=["dev", "holdout", "unseen"])
def test_prompt_14_never_proposed_without_its_words_in_the_sets(matcher, path):
    if not path.exists():
        pytest.skip(f"{path} not present")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [r["text"] for r in rows if 14 not in r["expect"] and not any(w in clean(r["text"]) for w in P14_WORDS)]
    assert len(texts) > 30
    assert [t for t in texts if 14 in _proposed(matcher.match(t))] == []


@pytest.mark.parametrize("text", ["以前的号违规被封了，现在实名认证失败", "认证的时候说主体不可作为有效主体",
                                  "根据平台违规管理规则,您的认证主体【欧阳娜娜】,不可作为大鱼号的有效主体"])
def test_prompt_14_with_its_words_is_proposed(matcher, text):
    r = matcher.match(text)
    assert r.tier != "none" and r.id == 14


def test_requires_is_a_hard_condition(kb):
    import dataclasses

    from bot.matching import Matcher

    p17 = kb.prompt(17)
    assert p17.requires == ()
    assert Matcher(kb).match("页面显示空白").id == 17
    strict = dataclasses.replace(p17, requires=("二维码",))
    m = Matcher(dataclasses.replace(kb, prompts=tuple(strict if p.id == 17 else p for p in kb.prompts)))
    assert 17 not in _proposed(m.match("页面显示空白"))
    assert m.match("二维码页面显示空白").id == 17
    assert m.match("二唯码页面显示空白").id == 17  # a homophone typo of a required word still counts


def test_prompt_14_requires_is_loaded(kb):
    assert {"违规", "主体", "有效主体", "不可作为"} <= set(kb.prompt(14).requires)


@pytest.mark.parametrize("requires,reason", [("[封号]", "requires"), ("[]", "requires")])
def test_bad_requires_is_rejected(tmp_path, requires, reason):
    from bot.kb import KnowledgeError, load_knowledge

    import shutil

    kdir = tmp_path / "kb"
    shutil.copytree(ROOT / "knowledge", kdir)
    text = (kdir / "prompts.yaml").read_text(encoding="utf-8")
    start = text.index("    requires: [")
    end = text.index("\n", start)
    (kdir / "prompts.yaml").write_text(text[:start] + f"    requires: {requires}" + text[end:], encoding="utf-8")
    with pytest.raises(KnowledgeError) as exc:
        load_knowledge(kdir)
    assert reason in exc.value.reason and exc.value.file.endswith("prompts.yaml") and exc.value.line


@pytest.mark.parametrize("text", ["我的实名认证失败了", "认证老是不成功", "实名认证失败怎么办", "认证一直过不去",
                                  "实名认证失败提示", "人脸识别失败"])
def test_vague_failure_report(matcher, text):
    r = matcher.match(text)
    assert r.vague is True
    assert r.tier in ("none", "suggest")
    assert r.as_json()["vague"] is True


@pytest.mark.parametrize("text", ["请问大鱼号的收益多久到账", "今天天气不错", "淘宝账号被盗了 身份证信息会不会泄露",
                                  "企业认证失败怎么办", "大鱼号怎么注销 不想做了"])
def test_off_topic_is_not_vague(matcher, text):
    r = matcher.match(text)
    assert (r.tier, r.vague) == ("none", False)


def test_prompts_and_paraphrases_are_not_vague(matcher, kb):
    rows = [json.loads(line) for line in DEV_SET.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if DEV_SET.exists() else []
    texts = [p.text.replace(p.wildcard or "\0", "张三") for p in kb.prompts] + [r["text"] for r in rows if r["expect"]]
    assert [t for t in texts if matcher.match(t).vague] == []
    assert all(matcher.match(p.text.replace(p.wildcard or "\0", "张三")).id == p.id for p in kb.prompts)


@pytest.mark.parametrize("text", [
    "认证失败也不说原因，直接又回到第一步了", "淘宝认证的时候app直接闪退了，什么提示都没有", "上传完身份证就回到起始页了",
    "认证失败了也没说为什么", "传完身份证又回到开始页面了，没有任何提示", "淘宝上认证到一半就卡住了",
])
def test_no_prompt_shown_is_prompt_15(matcher, text):
    r = matcher.match(text)
    assert (r.id, r.tier) == (15, "confident")
