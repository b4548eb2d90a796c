"""The materials looked at as a reviewer would (bot/dialog/review.py): what each ID photo shows,
and what looks wrong before 确认. Unit checks on OCR text, then real rendered card photos read by
the real OCR engine through the dialog (skipped without the OCR extra or a CJK font)."""
import json

import pytest

from bot.dialog import review

PORTRAIT = "姓名 王秀英\n性别 女 民族 汉\n出生 1992年8月15日\n住址 浙江省杭州市西湖区文三路1号\n公民身份号码 33010619920815123X"
EMBLEM = "中华人民共和国\n居民身份证\n签发机关 杭州市公安局西湖分局\n有效期限 2015.01.01-2035.01.01"


def test_sides_are_told_apart():
    assert review.id_side(PORTRAIT) == "portrait"
    assert review.id_side(EMBLEM) == "emblem"
    assert review.id_side("聊天记录 你好 在吗 今天发货吗") == "none"
    assert review.id_side("") is None and review.id_side(None) is None


def _ref(text):
    ref = {"file": "x", "kind": "image"}
    review.look(ref, text)
    return ref


def test_findings_name_what_looks_wrong():
    labels = {"id_front_photo": "单独身份证正面照片", "id_back_photo": "单独身份证反面照片",
              "id_handheld_photo": "手持身份证正面照片"}
    swapped = {"id_front_photo": _ref(EMBLEM), "id_back_photo": _ref(PORTRAIT),
               "id_handheld_photo": _ref("微信聊天 截图 好的 收到")}
    found = review.findings(swapped, labels)
    assert any("单独身份证正面照片】看起来是身份证国徽面" in f for f in found)
    assert any("单独身份证反面照片】看起来是身份证人像面" in f for f in found)
    assert any("手持身份证正面照片】里没有看到身份证" in f for f in found)
    right = {"id_front_photo": _ref(PORTRAIT), "id_back_photo": _ref(EMBLEM), "id_number": "33010619920815123X",
             "real_name": "王秀英"}
    assert review.findings(right, labels) == []
    typed_other = {**right, "id_number": "110108198506120316", "real_name": "李建国"}
    found = review.findings(typed_other, labels)
    assert any("身份证号和你填写的不一样" in f for f in found) and any("姓名和你填写的不一样" in f for f in found)
    assert review.findings({"id_front_photo": {"file": "x"}}, labels) == []  # nothing read: nothing said


@pytest.fixture(scope="module")
def cards(tmp_path_factory):
    pytest.importorskip("rapidocr", reason="the OCR extra is not installed (pip install -e '.[ocr]')")
    screenshots = pytest.importorskip("screenshots")
    font_path = screenshots.find_cjk_font()
    if font_path is None:
        pytest.skip("no CJK font: apt-get install fonts-wqy-microhei")
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(font_path), 34)
    d = tmp_path_factory.mktemp("cards")
    out = {}
    for name, text in (("portrait", PORTRAIT), ("emblem", EMBLEM)):
        img = Image.new("RGB", (900, 560), (236, 240, 232))
        draw = ImageDraw.Draw(img)
        for i, line in enumerate(text.splitlines()):
            draw.text((50, 50 + i * 90), line, fill=(20, 20, 20), font=font)
        out[name] = d / f"{name}.jpg"
        img.save(out[name], "JPEG", quality=90)
    return out


async def test_swapped_sides_are_shown_and_warned_before_confirm(driver, media, cards, tmp_path):
    from bot.appeals.package import export_appeal

    await driver.say("验证不通过,请重新认证")
    await driver.say("需要")
    r = await driver.say("有")
    assert r["awaiting"] == "failure_video"
    await driver.send(**{"from": "u1", "video": str(media["video"])})
    await driver.send(**{"from": "u1", "image": str(cards["portrait"])})  # hand-held: shows the card
    r = (await driver.send(**{"from": "u1", "image": str(cards["emblem"])}))[-1]  # front <- emblem side
    assert "身份证国徽面" in r["text"]  # said as it arrives
    r = (await driver.send(**{"from": "u1", "image": str(cards["portrait"])}))[-1]  # back <- portrait side
    assert r["awaiting"] == "confirm"
    assert "单独身份证正面照片:已收到图片(身份证国徽面)" in r["text"]
    assert "单独身份证反面照片:已收到图片(身份证人像面)" in r["text"]
    assert "请留意" in r["text"] and "看起来是身份证国徽面,不是身份证人像面" in r["text"]
    r = await driver.say("确认")  # kept anyway: OCR may be wrong
    out = export_appeal(driver.engine.settings, driver.engine.vault, r["appeal_id"], tmp_path / "x",
                        area=driver.engine.store.files)
    record = json.loads((out / "appeal.json").read_text(encoding="utf-8"))
    assert record["review_findings"]["kept_by_creator"] is True
    assert len(record["review_findings"]["findings"]) == 2
