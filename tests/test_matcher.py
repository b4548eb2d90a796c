"""The matcher: accuracy on the dev and holdout sets, tiers, normalisation, bad input."""
import json
import subprocess
import sys

import pytest

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
    assert set(rows[0]) == {"text", "id", "group", "tier", "score", "alternatives"}
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
