"""The knowledge base: faithful to the seed, and a bad file is rejected whole with file:line."""
import re
import shutil
import subprocess
import sys

import pytest

from bot.kb import KnowledgeError, load_knowledge
from conftest import KNOWLEDGE, ROOT, SEED

pytestmark = pytest.mark.skipif(not SEED.exists(), reason="shared/seeds not beside the repo")


def seed_prompts() -> dict[int, str]:
    out = {}
    for line in SEED.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\d{1,2})、(.+)$", line.strip())
        if m and 1 <= int(m.group(1)) <= 18:
            out[int(m.group(1))] = m.group(2).strip()
    return out


def test_all_18_prompts_verbatim(kb):
    seed = seed_prompts()
    assert sorted(seed) == list(range(1, 19))
    assert {p.id: p.text for p in kb.prompts} == seed


def test_remedies_are_the_seeds_words(kb):
    seed = SEED.read_text(encoding="utf-8")
    for group in kb.groups.values():
        for line in group.remedy.replace("{appeal_email}", "").splitlines():
            fragment = line.strip()
            if fragment.startswith("如未出现线上反馈入口"):  # the seed's address is redacted
                assert "个人实名认证失败材料-大鱼号名称" in seed
                continue
            assert fragment in seed, fragment
        for note in group.notes:
            assert note in seed


def test_groups_share_remedies_as_the_seed_does(kb):
    group_of = {p.id: p.group for p in kb.prompts}
    assert len({group_of[i] for i in range(1, 11)}) == 1
    assert group_of[12] == group_of[13]
    assert len({group_of[i] for i in (1, 11, 12, 14, 15, 16, 17, 18)}) == 8
    appeal = {p.id for p in kb.prompts if kb.groups[p.group].appeal}
    assert appeal == set(range(1, 11)) | {15}


def test_material_lists(kb):
    online = [m.label for m in kb.routes["online"].materials]
    assert online == ["实名认证失败视频(非录屏)", "手持身份证正面照片", "单独身份证正面照片", "单独身份证反面照片"]
    email = kb.routes["email"]
    assert [m.slot for m in email.materials] == [
        "account_name", "real_name", "id_number", "id_handheld_photo", "id_front_photo", "id_back_photo",
        "error_prompt", "taobao_screenshot", "phone_model", "taobao_version", "failure_video",
        "military_docs", "contact"]
    seed = SEED.read_text(encoding="utf-8")
    seed_list = seed[seed.index("所需材料:①大鱼号名称"):].split("\n", 1)[0]
    for m in email.materials:
        assert m.label in seed_list
    assert [m.optional for m in email.materials].count(True) == 1
    assert email.email_subject == "个人实名认证失败材料-{account_name}"


def test_no_email_address_invented():
    text = (KNOWLEDGE / "prompts.yaml").read_text(encoding="utf-8")
    assert not re.search(r"[\w.]+@[\w-]+\.\w+", text)


def _broken_copy(tmp_path, old: str, new: str):
    d = tmp_path / "kb"
    shutil.copytree(KNOWLEDGE, d)
    f = d / "prompts.yaml"
    text = f.read_text(encoding="utf-8")
    assert old in text
    f.write_text(text.replace(old, new, 1), encoding="utf-8")
    return d, text


@pytest.mark.parametrize("old,new,reason", [
    ("  - id: 2\n", "  - id: 1\n", "duplicate prompt id 1"),
    ("    group: identity_check\n    text: 验证失败", "    group: no_such_group\n    text: 验证失败", "unknown group"),
    ("    text: 认证信息已超过入驻上限\n", "    text: \"  \"\n", "prompts/12/text"),
    ("  qr_blank:\n    title: 无法生成实名认证二维码(提示语 17)\n    appeal: false\n    remedy: |-\n"
     "      请刷新页面后再重试,如还是问题重现,建议您过段时间重新登录大鱼号,再尝试点击实名认证按钮\n",
     "  qr_blank:\n    title: 无法生成实名认证二维码(提示语 17)\n    appeal: false\n", "'remedy' is a required property"),
    ("version: \"2026", "version: [\"2026", "YAML error"),
])
def test_broken_file_is_rejected_with_line(tmp_path, old, new, reason):
    d, original = _broken_copy(tmp_path, old, new)
    with pytest.raises(KnowledgeError) as err:
        load_knowledge(d)
    assert reason in str(err.value)
    assert err.value.file.endswith("prompts.yaml")
    assert err.value.line is not None and err.value.line > 0
    # the line points at (or just before) the edit
    edit_line = original[:original.index(old)].count("\n") + 1
    assert abs(err.value.line - edit_line) <= 3, (err.value.line, edit_line)


def test_duplicate_key_is_an_error(tmp_path):
    d, _ = _broken_copy(tmp_path, "  - id: 18\n", "  - id: 18\n    id: 19\n")
    with pytest.raises(KnowledgeError, match="duplicate key 'id'"):
        load_knowledge(d)


def test_binary_file_is_an_error(tmp_path):
    d = tmp_path / "kb"
    shutil.copytree(KNOWLEDGE, d)
    (d / "zz.yaml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(KnowledgeError, match="zz.yaml"):
        load_knowledge(d)


def test_extra_file_adds_prompts(tmp_path):
    d = tmp_path / "kb"
    shutil.copytree(KNOWLEDGE, d)
    (d / "extra.yaml").write_text("prompts:\n  - id: 19\n    group: qr_blank\n    text: 二维码已过期,请刷新\n",
                                  encoding="utf-8")
    kb = load_knowledge(d)
    assert kb.prompt(19).text == "二维码已过期,请刷新"


def test_kb_check_cli(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "bot", "kb", "check", str(KNOWLEDGE)], capture_output=True,
                        text=True, cwd=ROOT)
    assert ok.returncode == 0 and "18 prompts" in ok.stdout
    d, _ = _broken_copy(tmp_path, "  - id: 2\n", "  - id: 1\n")
    bad = subprocess.run([sys.executable, "-m", "bot", "kb", "check", str(d)], capture_output=True,
                         text=True, cwd=ROOT)
    assert bad.returncode == 1 and "prompts.yaml:" in bad.stderr and "duplicate prompt id" in bad.stderr
