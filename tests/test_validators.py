from __future__ import annotations

import dataclasses
import sys
from datetime import date
from pathlib import Path

import pytest
from PIL import Image
from stdnum.cn import ric

from bot.dialog.validators import (
    Validation,
    find_id_numbers,
    mask_id_number,
    validate_account_name,
    validate_contact,
    validate_id_number,
    validate_image,
    validate_phone_model,
    validate_real_name,
    validate_taobao_version,
    validate_video,
)

sys.path.insert(0, str(Path(__file__).parent))
import media  # noqa: E402


def make_id(prefix17: str) -> str:
    """A checksum-valid number built with stdnum (never a real person's)."""
    return prefix17 + ric.calc_check_digit(prefix17 + "0")


VALID_X = "11010519491231002X"
VALID_DIGIT = make_id("44030419900101123")


def test_fixtures_are_checksum_valid():
    assert ric.calc_check_digit(VALID_X) == "X"
    assert ric.calc_check_digit(VALID_DIGIT) == VALID_DIGIT[-1]


def test_validation_is_frozen():
    v = Validation(True, "x", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.ok = False  # type: ignore[misc]


# ------------------------------------------------------------------ ID number

@pytest.mark.parametrize(
    "text",
    [
        VALID_X,
        VALID_X.lower(),
        "110105 19491231 002x",
        "110105-1949-1231-002X",
        "１１０１０５１９４９１２３１００２Ｘ",  # full-width
        f"  {VALID_X}\n",
    ],
)
def test_id_number_accepts_and_normalises(text):
    v = validate_id_number(text)
    assert v.ok and v.error is None
    assert v.value == VALID_X


def test_id_number_with_digit_check():
    assert validate_id_number(VALID_DIGIT).value == VALID_DIGIT


def test_id_number_wrong_length():
    v = validate_id_number("1101051949123100")
    assert not v.ok and v.value is None
    assert "18位" in v.error and "16位" in v.error


def test_id_number_bad_checksum():
    bad = VALID_X[:-1] + "1"
    v = validate_id_number(bad)
    assert not v.ok and "校验" in v.error


def test_id_number_letter_inside():
    v = validate_id_number("1101051949123100AX")
    assert not v.ok and "17位数字" in v.error


@pytest.mark.parametrize("birth", ["19490230", "19491301", "18991231", "20990101"])
def test_id_number_impossible_birth_date(birth):
    number = make_id("110105" + birth + "002")  # checksum valid, so only the date is wrong
    v = validate_id_number(number, today=date(2026, 1, 1))
    assert not v.ok and "出生日期" in v.error


def test_id_number_future_relative_to_today():
    number = make_id("11010520250601002")
    assert validate_id_number(number, today=date(2026, 1, 1)).ok
    assert not validate_id_number(number, today=date(2025, 5, 1)).ok


def test_id_errors_are_distinct():
    errors = {
        validate_id_number("123").error,
        validate_id_number(VALID_X[:-1] + "1").error,
        validate_id_number(make_id("11010519490230002")).error,
    }
    assert len(errors) == 3


def test_mask_id_number():
    assert mask_id_number(VALID_X) == "110105********002X"
    assert mask_id_number("110105 19491231 002x") == "110105********002X"
    assert mask_id_number("123") == "***"


def test_find_id_numbers():
    text = f"我的身份证是{VALID_X}，另一个 110105-19491231-002x 订单 123 {VALID_DIGIT} 结束"
    found = find_id_numbers(text)
    assert found == [VALID_X, "110105-19491231-002x", VALID_DIGIT]
    for s in found:
        assert s in text


def test_find_id_numbers_ignores_invalid_and_longer_runs():
    assert find_id_numbers(VALID_X[:-1] + "1") == []  # bad checksum
    assert find_id_numbers("9" + VALID_X) == []  # part of a longer run
    assert find_id_numbers("电话 13812345678") == []
    assert find_id_numbers("") == []


def test_find_id_numbers_full_width():
    fw = "１１０１０５１９４９１２３１００２Ｘ"
    assert find_id_numbers(f"号码{fw}。") == [fw]


# ------------------------------------------------------------------ names

@pytest.mark.parametrize(
    "text,expected",
    [
        ("张三", "张三"),
        (" 欧阳娜娜 ", "欧阳娜娜"),
        ("张 三", "张三"),
        ("买买提·艾力", "买买提·艾力"),
        ("买买提•艾力", "买买提·艾力"),
        ("买买提．艾力", "买买提·艾力"),
        ("阿卜杜拉・买买提", "阿卜杜拉·买买提"),
        ("王𠮷", "王𠮷"),  # Ext B
        ("李\U00030000", "李\U00030000"),  # Ext G
        ("陈䶮", "陈䶮"),  # Ext A
    ],
)
def test_real_name_ok(text, expected):
    v = validate_real_name(text)
    assert v.ok, v.error
    assert v.value == expected


@pytest.mark.parametrize(
    "text,needle",
    [
        ("", "姓名"),
        ("张", "2到20"),
        ("张" * 21, "2到20"),
        ("张3", "数字或字母"),
        ("Zhang San", "数字或字母"),
        ("张ｓａｎ", "数字或字母"),
        ("·张三", "汉字"),
        ("张三·", "汉字"),
        ("张··三", "汉字"),
        ("张三！", "汉字"),
        ("김철수", "汉字"),
    ],
)
def test_real_name_rejected(text, needle):
    v = validate_real_name(text)
    assert not v.ok and needle in v.error


# ------------------------------------------------------------------ short text items

def test_account_name():
    assert validate_account_name("  小鱼的日常 ").value == "小鱼的日常"
    assert validate_account_name("A").ok
    assert validate_account_name("鱼" * 30).ok
    assert "30" in validate_account_name("鱼" * 31).error
    assert not validate_account_name("   ").ok
    assert "一行" in validate_account_name("第一行\n第二行").error


@pytest.mark.parametrize(
    "text,expected",
    [("iPhone 13", "iPhone 13"), ("华为 Mate 60 Pro", "华为 Mate 60 Pro"), ("小米14", "小米14"),
     ("  OPPO   Reno8 ", "OPPO Reno8"), ("ｉＰｈｏｎｅ１５", "iPhone15")],
)
def test_phone_model_ok(text, expected):
    assert validate_phone_model(text).value == expected


@pytest.mark.parametrize("text", ["", "a", "x" * 41, "!!!", "？？"])
def test_phone_model_rejected(text):
    v = validate_phone_model(text)
    assert not v.ok and v.error


@pytest.mark.parametrize(
    "text,expected",
    [("10.38.0", "10.38.0"), ("10.38", "10.38"), ("V10.38.0", "10.38.0"), ("v10.38.0", "10.38.0"),
     (" v 10.38.0 ", "10.38.0"), ("１０．３８．０", "10.38.0"), ("10.38.0.1", "10.38.0.1"),
     ("版本号：10.38.0", "10.38.0"), ("淘宝10.38.0", "10.38.0")],
)
def test_taobao_version_ok(text, expected):
    assert validate_taobao_version(text).value == expected


@pytest.mark.parametrize("text", ["", "10", "10.38.0.1.2", "最新版", "10..38", "v", "10.38.0a"])
def test_taobao_version_rejected(text):
    v = validate_taobao_version(text)
    assert not v.ok and "10.38.0" in v.error


@pytest.mark.parametrize(
    "text,value,kind",
    [
        ("13812345678", "13812345678", "phone"),
        ("+86 138-1234-5678", "13812345678", "phone"),
        ("86 13812345678", "13812345678", "phone"),
        ("１３８１２３４５６７８", "13812345678", "phone"),
        ("Creator.Name+dy@Example.COM", "Creator.Name+dy@example.com", "email"),
        ("12345678@qq.com", "12345678@qq.com", "email"),
        ("wxid_abc123", "wxid_abc123", "wechat"),
        ("Dayu-fan_2024", "Dayu-fan_2024", "wechat"),
    ],
)
def test_contact_ok(text, value, kind):
    v = validate_contact(text)
    assert v.ok, v.error
    assert (v.value, v.kind) == (value, kind)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("12812345678", "11位"),  # 2nd digit not 3-9
        ("1381234567", "11位"),
        ("name@", "邮箱"),
        ("a@b", "邮箱"),
        ("a..b@example.com", "邮箱"),
        ("abc", "微信号"),  # too short for a WeChat id
        ("1abcdef", "微信号"),  # must start with a letter
        ("", "联系方式"),
    ],
)
def test_contact_rejected(text, needle):
    v = validate_contact(text)
    assert not v.ok and needle in v.error


# ------------------------------------------------------------------ images

def test_image_formats(tmp_path):
    assert validate_image(media.make_jpeg(tmp_path / "a.jpg")).value == "jpeg"
    assert validate_image(media.make_png(tmp_path / "a.png")).value == "png"
    assert validate_image(media.make_webp(tmp_path / "a.webp")).value == "webp"


def test_image_judged_by_content_not_name(tmp_path):
    png_named_jpg = media.make_png(tmp_path / "really_png.jpg")
    v = validate_image(png_named_jpg)
    assert v.ok and v.value == "png" and (v.width, v.height) == (800, 500)
    fake = validate_image(media.make_fake_jpeg(tmp_path / "fake.jpg"))
    assert not fake.ok and "不是可以打开的图片" in fake.error


def test_image_too_small(tmp_path):
    v = validate_image(media.make_jpeg(tmp_path / "s.jpg", w=640, h=150))
    assert not v.ok and "200" in v.error
    assert validate_image(media.make_jpeg(tmp_path / "ok.jpg", w=200, h=200)).ok


def test_image_pixel_cap(tmp_path):
    p = media.make_png(tmp_path / "big.png", w=1200, h=1000)
    v = validate_image(p, max_pixels=1_000_000)
    assert not v.ok and "过大" in v.error


def test_image_decompression_bomb(tmp_path):
    # A tiny PNG that claims 20000x20000 px (400 MP): rejected from the header, never decoded.
    p = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(p, "PNG", optimize=True)
    assert p.stat().st_size < 200_000
    v = validate_image(p)
    assert not v.ok and "过大" in v.error


def test_image_truncated_and_missing(tmp_path):
    p = media.make_jpeg(tmp_path / "t.jpg", w=1000, h=1000)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    assert not validate_image(p).ok
    assert not validate_image(tmp_path / "nope.jpg").ok
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert not validate_image(tmp_path / "empty.jpg").ok


def test_image_video_is_not_image(tmp_path):
    assert not validate_image(media.make_mp4(tmp_path / "v.jpg")).ok


def test_image_max_bytes(tmp_path):
    p = media.make_png(tmp_path / "a.png")
    assert not validate_image(p, max_bytes=100).ok


# ------------------------------------------------------------------ videos

def test_video_ok(tmp_path):
    v = validate_video(media.make_mp4(tmp_path / "v.mp4", seconds=2))
    assert v.ok, v.error
    assert v.value == "mp4" and v.kind == "video"
    assert v.duration_seconds == pytest.approx(2.0, abs=0.2)
    assert (v.width, v.height) == (320, 240)


def test_video_fast_start_ok(tmp_path):
    assert validate_video(media.make_mp4(tmp_path / "v.mp4", fast_start=True)).ok


def test_video_named_wrong_is_still_video(tmp_path):
    assert validate_video(media.make_mp4(tmp_path / "clip.dat")).ok


@pytest.mark.parametrize("name", ["a.m4a", "a.mp4", "a.wav"])
def test_video_rejects_audio_only(tmp_path, name):
    v = validate_video(media.make_audio_only(tmp_path / name))
    assert not v.ok and "只有声音" in v.error


def test_video_rejects_image_and_text(tmp_path):
    v = validate_video(media.make_jpeg(tmp_path / "a.mp4"))
    assert not v.ok and "图片" in v.error
    v = validate_video(media.make_fake_jpeg(tmp_path / "b.mp4"))
    assert not v.ok and "不是视频" in v.error


@pytest.mark.parametrize("fast_start", [False, True])
def test_video_rejects_truncated(tmp_path, fast_start):
    v = validate_video(media.make_truncated_mp4(tmp_path / "t.mp4", fast_start=fast_start))
    assert not v.ok and "损坏" in v.error


def test_video_rejects_corrupt_payload(tmp_path):
    p = media.make_mp4(tmp_path / "c.mp4")
    data = bytearray(p.read_bytes())
    data[32:] = bytes(len(data) - 32)  # keep the ftyp box, zero the rest
    p.write_bytes(bytes(data))
    assert not validate_video(p).ok


def test_video_max_bytes(tmp_path):
    p = media.make_mp4(tmp_path / "v.mp4")
    v = validate_video(p, max_bytes=1024)
    assert not v.ok and "太大" in v.error
    assert validate_video(p, max_bytes=p.stat().st_size).ok


def test_video_missing_or_empty(tmp_path):
    assert not validate_video(tmp_path / "none.mp4").ok
    (tmp_path / "e.mp4").write_bytes(b"")
    assert not validate_video(tmp_path / "e.mp4").ok
