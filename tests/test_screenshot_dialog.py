"""Screenshots sent to the bot: read offline, matched, answered; kept as evidence in an appeal."""
import json

import pytest

pytest.importorskip("rapidocr", reason="the OCR extra is not installed (pip install -e '.[ocr]')")
screenshots = pytest.importorskip("screenshots")
if screenshots.find_cjk_font() is None:
    pytest.skip("no CJK font: apt-get install fonts-wqy-microhei", allow_module_level=True)

from bot.appeals.package import export_appeal  # noqa: E402
from driver import Driver, email_answers  # noqa: E402

CASES = [
    ("人脸与公安网照片不一致,请确保是账户本人操作", 2, "clean"),
    ("认证信息已超过入驻上限", 13, "jpeg30"),
    ("扫描二维码后提示“未知客户端”", 18, "rotated"),
    ("姓名与身份证号不匹配,请重新确认并再次认证", 6, "small"),
    ("身份证照片信息与需认证的身份证号码不一致,或身份证照片无法识别。请按提示重新提交有效身份证照片", 5, "blur"),
]


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("shots")
    out = {}
    for text, pid, variant in CASES:
        out[pid] = screenshots.render_failure_screenshot(text, d / f"p{pid}-{variant}.jpg", variant)
    out["blank"] = screenshots.render_blank_screenshot(d / "blank.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    out["corrupt"] = d / "corrupt.png"
    return out


@pytest.mark.parametrize("text,pid,variant", CASES)
async def test_screenshot_in_a_dm_gets_the_remedy(driver, shots, text, pid, variant):
    r = (await driver.send(**{"from": "u1", "image": str(shots[pid])}))[-1]
    assert r["prompt_id"] == pid, r["text"][:80]


async def test_ui_words_alone_are_not_a_prompt(driver, shots):
    r = (await driver.send(**{"from": "u1", "image": str(shots["blank"])}))[-1]
    assert r["prompt_id"] is None and "没有找到" in r["text"]


async def test_corrupt_image_gets_a_clear_answer(driver, shots):
    r = (await driver.send(**{"from": "u1", "image": str(shots["corrupt"])}))[-1]
    assert r["state"] == "idle" and "不是可以打开的图片" in r["text"] and "打字发给我" in r["text"]


async def test_screenshot_in_a_room_with_mention(driver, shots):
    r = await driver.send(room="r1", **{"from": "u2"}, mention=True, image=str(shots[13]))
    assert len(r) == 1 and r[0]["prompt_id"] == 13 and r[0]["mention"]
    assert await driver.send(room="r1", **{"from": "u2"}, image=str(shots[13])) == []


async def test_taobao_screenshot_is_kept_with_its_text(driver, shots, media, tmp_path):
    answers = email_answers(media)
    answers["taobao_screenshot"] = {"image": str(shots[2])}
    r = await driver.say("人脸与公安网照片不一致")
    await driver.say("是")
    r = await driver.say("没有")
    while r["awaiting"] is not None:
        r = (await driver.send(**{"from": "u1", **answers[r["awaiting"]]}))[-1]
    out = export_appeal(driver.engine.settings, driver.engine.vault, r["appeal_id"], tmp_path / "x")
    record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
    assert "公安网" in record["slots"]["taobao_screenshot_ocr_text"]


async def test_without_ocr_the_bot_asks_to_type(tmp_path, shots):
    d = await Driver.open(tmp_path, BOT_OCR_ENABLED="false")
    try:
        r = (await d.send(**{"from": "u1", "image": str(shots[2])}))[-1]
        assert "打字" in r["text"] and r["prompt_id"] is None
    finally:
        await d.close()


async def test_id_card_photo_in_a_room_gets_a_recall_warning(driver, tmp_path):
    shot = screenshots.render_failure_screenshot("公民身份号码 11010519491231002X", tmp_path / "id.png", "clean")
    r = await driver.send(room="r1", **{"from": "u2"}, mention=True, image=str(shot))
    assert len(r) == 1 and "撤回" in r[0]["text"] and "1101" not in r[0]["text"]
