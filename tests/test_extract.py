"""Values found inside creators' messages (bot/dialog/extract.py)."""
from __future__ import annotations

import dataclasses

import pytest
from stdnum.cn import ric

from bot.dialog.extract import Extraction, extract, kind_of_other_value
from bot.dialog.validators import validate_id_number


def make_id(prefix17: str) -> str:
    """A checksum-valid number built with stdnum (never a real person's)."""
    return prefix17 + ric.calc_check_digit(prefix17 + "0")


ID_X = make_id("33010619920815123")  # ends in X
ID_A = make_id("11010819850612031")
ID_B = make_id("21020219870707008")
ID_C = make_id("31011519780923004")
ID_D = make_id("44010619920304152")
SLOTS = ["id_number", "real_name", "account_name", "taobao_version", "contact", "phone_model"]


def test_fixtures_are_checksum_valid():
    assert ID_X.endswith("X")
    for number in (ID_X, ID_A, ID_B, ID_C, ID_D):
        # (not ric.is_valid: its region table lacks some districts, which we do not check either)
        assert validate_id_number(number).value == number


def spaced(number: str, *widths: int) -> str:
    parts, i = [], 0
    for w in widths:
        parts.append(number[i:i + w])
        i += w
    return " ".join(parts)


def full_width(s: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def check(slot: str, text: str, value: str, rest: str) -> Extraction:
    found = extract(slot, text)
    assert found is not None, text
    assert (found.value, found.error, found.rest) == (value, None, rest), text
    return found


# ------------------------------------------------------------------ values found

ID_FOUND = [
    (f"身份证号{ID_X}", ID_X, ""),
    (spaced(ID_X, 6, 8, 4).lower(), ID_X, ""),
    (f"身份證號碼：{ID_A}", ID_A, ""),
    (f"号码是{ID_B}，谢谢啦", ID_B, "谢谢啦"),
    (f"刚翻出来身份证 上面写的是{ID_C} 你看下", ID_C, "刚翻出来身份证 上面写的 你看下"),
    (full_width(ID_D), ID_D, ""),
    (spaced(ID_D, 4, 4, 4, 4, 2), ID_D, ""),
    (ID_X.lower(), ID_X, ""),
    (f"证件号: {ID_A}。后面要拍照吗？", ID_A, "后面要拍照吗？"),
    (f"订单号 123 {ID_B}", ID_B, "订单号 123"),
]


@pytest.mark.parametrize("text,value,rest", ID_FOUND)
def test_id_number_found(text, value, rest):
    check("id_number", text, value, rest)


NAME_FOUND = [
    ("我叫陈美玲", "陈美玲", ""),
    ("姓名：王秀英。", "王秀英", ""),
    ("姓名:李建国", "李建国", ""),
    ("李建国。", "李建国", ""),
    ("李建国", "李建国", ""),
    ("买买提·艾力", "买买提·艾力", ""),
    ("我叫刘德明", "刘德明", ""),
    ("我叫陳美玲，謝謝", "陳美玲", "謝謝"),  # typed in traditional characters: kept as typed
    ("陳美玲", "陳美玲", ""),
    ("我是李建国", "李建国", ""),
    ("名字是 张伟 要发照片吗", "张伟", "要发照片吗"),
    ("本人：欧阳娜娜", "欧阳娜娜", ""),
    ("我叫王秀英哈", "王秀英", ""),
    ("我叫陈美玲身份证号还没找到", "陈美玲", "身份证号还没找到"),
]


@pytest.mark.parametrize("text,value,rest", NAME_FOUND)
def test_real_name_found(text, value, rest):
    check("real_name", text, value, rest)


ACCOUNT_FOUND = [
    ("我的大鱼号叫做小王说车 去年注册的", "小王说车", "去年注册的"),
    ("叫 数码老李，对了后面要拍视频吗", "数码老李", "对了后面要拍视频吗"),
    ("「小鱼的美食日记」", "小鱼的美食日记", ""),
    ("小鱼的美食日记", "小鱼的美食日记", ""),
    ("鱼乐小站", "鱼乐小站", ""),
    ("名称是Tech老王", "Tech老王", ""),
    ("大鱼号名称：“我的美食日记”", "我的美食日记", ""),
    ("我的号叫《深夜食堂》 好像改过名", "深夜食堂", "好像改过名"),
    ("大鱼号是 Ｔｅｃｈ老王", "Ｔｅｃｈ老王", ""),  # cut from what was typed
    ("小鱼叫卖", "小鱼叫卖", ""),  # 叫 inside a name is no label
    ("它叫小王说车吧", "小王说车", "它"),
]


@pytest.mark.parametrize("text,value,rest", ACCOUNT_FOUND)
def test_account_name_found(text, value, rest):
    check("account_name", text, value, rest)


VERSION_FOUND = [
    ("版本是10.42.10", "10.42.10", ""),
    ("淘宝版本 V10.38.0 最新的", "10.38.0", "最新的"),
    ("10.38", "10.38", ""),
    ("v10.38.0", "10.38.0", ""),
    ("１０。３８。０", "10.38.0", ""),
    ("淘宝的版本号：10.40.5，在哪里更新？", "10.40.5", "在哪里更新？"),
    ("等了3.5天 淘宝是10.38", "10.38", "等了3.5天"),
]


@pytest.mark.parametrize("text,value,rest", VERSION_FOUND)
def test_taobao_version_found(text, value, rest):
    check("taobao_version", text, value, rest)


CONTACT_FOUND = [
    ("手机号13857112345 微信也是这个", "13857112345", "微信也是这个"),
    ("邮箱是abc@example.com", "abc@example.com", ""),
    ("微信号：wxid_abc123", "wxid_abc123", ""),
    ("+86 138-5711-2345", "13857112345", ""),
    ("电话：138 5711 2345，白天都在", "13857112345", "白天都在"),
    ("vx: Xiaowang_2024", "Xiaowang_2024", ""),
    ("发我邮箱吧 Name.Li@Example.COM.", "Name.Li@example.com", "发我邮箱吧"),
    ("wxid_abc123", "wxid_abc123", ""),
    ("１３８５７１１２３４５", "13857112345", ""),
]


@pytest.mark.parametrize("text,value,rest", CONTACT_FOUND)
def test_contact_found(text, value, rest):
    check("contact", text, value, rest)


PHONE_FOUND = [
    ("我用的是华为Mate60 Pro 刚买的", "华为Mate60 Pro", "刚买的"),
    ("苹果13", "苹果13", ""),
    ("iPhone 13 Pro Max", "iPhone 13 Pro Max", ""),
    ("手机型号：小米14 Ultra", "小米14 Ultra", ""),
    ("型号是PGT-AN10", "PGT-AN10", ""),
    ("vivo X100，拍照挺好", "vivo X100", "拍照挺好"),
    ("V2309A", "V2309A", ""),
    ("ＯＰＰＯ Ｆｉｎｄ Ｘ７", "OPPO Find X7", ""),  # the validator folds full-width
]


@pytest.mark.parametrize("text,value,rest", PHONE_FOUND)
def test_phone_model_found(text, value, rest):
    check("phone_model", text, value, rest)


# ------------------------------------------------------------------ bare or not

@pytest.mark.parametrize("slot,text,bare", [
    ("real_name", "李建国", True),
    ("real_name", "我叫陈美玲", False),
    ("account_name", "鱼乐小站", True),
    ("account_name", "「鱼乐小站」", False),
    ("phone_model", "V2309A", True),
    ("phone_model", "iPhone 13", False),
    ("contact", "wxid_abc123", True),
    ("contact", "13857112345", False),
    ("id_number", ID_X, False),
    ("taobao_version", "10.38.0", False),
])
def test_bare_flag(slot, text, bare):
    assert extract(slot, text).bare is bare


@pytest.mark.parametrize("slot,text", [
    ("real_name", "李建国"),
    ("account_name", "鱼乐小站"),
    ("phone_model", "V2309A"),
    ("contact", "wxid_abc123"),
])
def test_bare_value_needs_bare_ok(slot, text):
    assert extract(slot, text, bare_ok=False) is None


@pytest.mark.parametrize("slot,text,value", [
    ("real_name", "我叫陈美玲，要拍视频吗", "陈美玲"),
    ("account_name", "叫 数码老李，对了后面要拍视频吗", "数码老李"),
    ("account_name", "「小鱼的美食日记」", "小鱼的美食日记"),
    ("id_number", f"号码是{ID_B}，谢谢啦", ID_B),
    ("taobao_version", "淘宝版本 V10.38.0 最新的", "10.38.0"),
    ("contact", "手机号13857112345 微信也是这个", "13857112345"),
    ("contact", "微信号：wxid_abc123", "wxid_abc123"),
    ("phone_model", "我用的是华为Mate60 Pro 刚买的", "华为Mate60 Pro"),
])
def test_labelled_values_found_without_bare_ok(slot, text, value):
    assert extract(slot, text, bare_ok=False).value == value


# ------------------------------------------------------------------ invalid candidates

@pytest.mark.parametrize("slot,text,error_part", [
    ("id_number", ID_X[:17], "17位"),
    ("id_number", "身份证号 3301 0619 9208 1512", "16位"),
    ("id_number", ID_A[:-1] + ("1" if ID_A[-1] != "1" else "2"), "校验"),
    ("real_name", "姓名：王", "2到20个字"),
    ("account_name", "「" + "鱼" * 31 + "」", "30个字"),
    ("contact", "邮箱是abc@", "邮箱"),
    ("contact", "1385711234", "11位"),
])
def test_invalid_candidate_gives_the_validators_error(slot, text, error_part):
    found = extract(slot, text)
    assert found is not None and found.value is None
    assert error_part in found.error


# ------------------------------------------------------------------ no value

NO_VALUE = [
    ("id_number", "13857112345"),
    ("id_number", "手机号是138 5711 2345"),
    ("id_number", "身份证在我老婆那"),
    ("real_name", "我回来了 接着弄吧"),
    ("real_name", "稍等 我去拿下身份证"),
    ("real_name", "不弄了 太烦了"),
    ("real_name", "好的"),
    ("real_name", "没有"),
    ("real_name", "是的"),
    ("real_name", "我是想问一下"),
    ("real_name", "名字写错了"),
    ("real_name", "身份证"),
    ("real_name", "姓名是什么"),
    ("real_name", "我叫陈美玲今年三十岁"),
    ("account_name", "哦我看了 没有"),
    ("account_name", "哦我看了 没找到名字在哪"),
    ("account_name", "不弄了 太烦了"),
    ("account_name", "我回来了 接着弄吧"),
    ("account_name", "大鱼号叫什么来着"),
    ("account_name", "好"),
    ("account_name", "是的"),
    ("account_name", ID_X),
    ("account_name", "13857112345"),
    ("taobao_version", "我不知道版本"),
    ("taobao_version", ID_X),
    ("taobao_version", "13857112345"),
    ("taobao_version", "等了3.5天了"),
    ("contact", "微信也是这个"),
    ("contact", "thanks"),
    ("contact", spaced(ID_X, 6, 8, 4)),  # "19920815 123" inside is not a mobile
    ("phone_model", "不知道型号"),
    ("phone_model", "在哪看"),
    ("phone_model", "华为"),
    ("phone_model", "13857112345"),
    ("phone_model", "ok"),
    ("phone_model", "手机型号在哪看"),
]


@pytest.mark.parametrize("bare_ok", [True, False])
@pytest.mark.parametrize("slot,text", NO_VALUE)
def test_no_value(slot, text, bare_ok):
    found = extract(slot, text, bare_ok=bare_ok)
    assert found is None or found.value is None, found


def test_unknown_slot():
    assert extract("id_front_photo", "随便") is None


# ------------------------------------------------------------------ other values

@pytest.mark.parametrize("slot,text,kind", [
    ("real_name", ID_X, "id_number"),
    ("account_name", f"身份证号{ID_A}", "id_number"),
    ("contact", ID_X, "id_number"),
    ("id_number", "13857112345", "mobile"),
    ("real_name", "我手机 138 5711 2345", "mobile"),
    ("contact", "13857112345", None),
    ("id_number", ID_X, None),
    ("id_number", spaced(ID_X, 6, 8, 4), None),
    ("real_name", "李建国", None),
    ("phone_model", "", None),
])
def test_kind_of_other_value(slot, text, kind):
    assert kind_of_other_value(slot, text) == kind


# ------------------------------------------------------------------ never raises

JUNK = ["", " ", "😀😀", "\x00\x01", "a" * 10000, "1" * 10000, "1 " * 5000, "叫" * 10000, "我叫" * 5000,
        "「" * 10000, "a@" * 5000, "\ud800abc", "…" * 3000, "姓名：" + "李" * 9000, "华为1 " * 2000,
        bytes(range(256)).decode("latin-1"), "\u3000" * 5000, None]


@pytest.mark.parametrize("bare_ok", [True, False])
@pytest.mark.parametrize("slot", SLOTS + ["unknown"])
@pytest.mark.parametrize("text", JUNK, ids=range(len(JUNK)))
def test_junk_never_raises(slot, text, bare_ok):
    found = extract(slot, text, bare_ok=bare_ok)
    assert found is None or isinstance(found, Extraction)
    kind_of_other_value(slot, text)


def test_extraction_is_frozen():
    found = extract("real_name", "李建国")
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.value = "x"  # type: ignore[misc]
