"""Looking at the materials as a reviewer would, before the creator confirms (needs OCR).

What a photo shows is read from its OCR text: the ID card's portrait side (姓名, 公民身份号码 …) or its
emblem side (签发机关, 有效期限 …), or neither. The checks compare each photo with the item it fills
and with what was typed; each finding is a short sentence shown with the summary. OCR can be wrong:
the creator may keep a photo anyway, and the findings and that choice are recorded with the appeal.
"""
from __future__ import annotations

import hashlib
import re

from bot.dialog import validators as v
from bot.matching.normalize import to_simplified

_PORTRAIT = ("公民身份号码", "公民身份", "身份号码", "姓名", "性别", "民族", "出生", "住址")
_EMBLEM = ("签发机关", "有效期限", "有效期", "居民身份证", "中华人民共和国", "长期")
SIDE_WORDS = {"portrait": "身份证人像面", "emblem": "身份证国徽面", "none": "不像身份证"}
ID_PHOTO_SLOTS = {"id_front_photo": "portrait", "id_back_photo": "emblem", "id_handheld_photo": "any"}


def id_side(text: str | None) -> str | None:
    """'portrait', 'emblem', 'none' (text, but no ID card words), or None (nothing was read)."""
    if not text or not text.strip():
        return None
    s = to_simplified(re.sub(r"\s+", "", text))
    portrait = sum(w in s for w in _PORTRAIT) + (2 if v.find_id_numbers(s) else 0)
    emblem = sum(w in s for w in _EMBLEM)
    if portrait >= 2 and portrait >= emblem:
        return "portrait"
    if emblem >= 2:
        return "emblem"
    return "none"


def id_hash(number: str) -> str:
    """An ID number read from a photo, kept only as a hash to compare with the typed one."""
    return hashlib.sha256(number.encode()).hexdigest()[:16]


def look(ref: dict, text: str | None) -> None:
    """Note on a photo's reference what OCR saw in it (side, and a hash of an ID number on it)."""
    side = id_side(text)
    if side is None:
        return
    ref["side"] = side
    ref["seen"] = SIDE_WORDS[side]
    numbers = v.find_id_numbers(to_simplified(text or ""))
    if numbers:
        ref["id_hash"] = id_hash(v.validate_id_number(numbers[0]).value or "")
    names = re.findall(r"姓名\s*([\u4e00-\u9fff·]{2,20})", to_simplified(text or ""))
    if names:
        ref["name_hash"] = id_hash(names[0])


def findings(slots: dict, labels: dict[str, str], prompt_of=None) -> list[str]:
    """What looks wrong, one short phrase each (empty when nothing does or nothing was read)."""
    out: list[str] = []
    for slot, want in ID_PHOTO_SLOTS.items():
        ref = slots.get(slot)
        if not isinstance(ref, dict) or "side" not in ref:
            continue
        side, label = ref["side"], labels.get(slot, slot)
        if side == "none":
            out.append(f"【{label}】里没有看到身份证")
        elif want != "any" and side != want:
            out.append(f"【{label}】看起来是{SIDE_WORDS[side]},不是{SIDE_WORDS[want]}")
    typed_id = slots.get("id_number")
    typed_name = slots.get("real_name")
    for slot in ("id_front_photo", "id_handheld_photo"):
        ref = slots.get(slot)
        if not isinstance(ref, dict):
            continue
        label = labels.get(slot, slot)
        if isinstance(typed_id, str) and ref.get("id_hash") and ref["id_hash"] != id_hash(typed_id):
            out.append(f"【{label}】上的身份证号和你填写的不一样")
        if isinstance(typed_name, str) and ref.get("name_hash") and ref["name_hash"] != id_hash(typed_name):
            out.append(f"【{label}】上的姓名和你填写的不一样")
    shot, typed_prompt = slots.get("taobao_screenshot"), slots.get("error_prompt")
    if isinstance(shot, dict) and shot.get("ocr_prompt_id") and isinstance(typed_prompt, str) and prompt_of:
        typed_id_ = prompt_of(typed_prompt)
        if typed_id_ and typed_id_ != shot["ocr_prompt_id"]:
            out.append(f"【{labels.get('taobao_screenshot', '淘宝认证异常截图')}】里的提示和"
                       f"【{labels.get('error_prompt', '异常提示语')}】不一样")
    return out
