"""Find an appeal item's value inside a creator's message.

Creators answer "请发送身份证上的姓名" with "我叫陈美玲" or "姓名：王秀英。" and paste the ID number in
the middle of a sentence. `extract(slot, text)` finds the value (by its label, quotes or its own
pattern, and, only when the caller allows it, the whole message as a bare value), validates it with
`bot.dialog.validators` and hands back what is left of the message for the reader.

Pure functions; they never raise on any input. Matching runs on a normalised copy of the message
(NFKC, simplified Chinese) that has one character per original character, so every value is cut
from what the creator typed (a name in traditional characters is kept as typed).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from bot.dialog import validators as v
from bot.matching.normalize import to_simplified

__all__ = ["Extraction", "extract", "kind_of_other_value"]


@dataclass(frozen=True)
class Extraction:
    value: str | None  # the normalised, validated value (None when the candidate is invalid)
    error: str | None  # the validator's error when a candidate was found but is invalid
    rest: str  # the message without the candidate and its label words, trimmed; "" if nothing is left
    bare: bool  # True when the value is the whole message (no label, quote or pattern found it)


# ---------------------------------------------------------------- shared helpers

_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U000323af"
_PARTICLES = frozenset("的了吧啊呀哈哦呢嘛啦哇噢喔")
# Short replies (yes, no, thanks, wait...) that are never a name, an account name, a model or a
# WeChat id; compared lower-cased, without spaces and trailing particles.
_REPLY_WORDS = frozenset(
    "好 对 是 行 嗯 嗯嗯 哦 噢 喔 不 没 否 有 要 在 不要 不是 不对 不行 没了 当然 确定 确认 没问题 不需要 "
    "可以 需要 不用 谢谢 多谢 感谢 收到 明白 知道 继续 取消 退出 算了 好滴 好嘞 对对 行行 没事 没错 再见 拜拜 "
    "开始 重来 跳过 帮助 菜单 返回 暂停 稍等 等等 人工 客服 发了 发过了 好了 "
    "ok okay yes no hi hello thanks thank thx bye sorry help menu stop cancel quit".split()
)
# Words naming the items themselves: "身份证" alone is a reply about the ID card, not a name.
_ITEM_WORDS = ("身份证", "大鱼号", "淘宝", "手机", "截图", "照片", "视频", "申诉", "认证", "实名", "客服",
               "版本", "型号", "邮箱", "微信", "名称", "名字", "姓名", "号码")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[- ]?)?1[3-9][0-9](?:[- ]?[0-9]){8}(?![0-9])")
# 18 characters shaped like an ID number (valid or not): masked before looking for a mobile,
# so "330106 19920815 123x" does not read as the mobile 19920815123.
_ID_LIKE = re.compile(r"(?<![0-9])[0-9](?:[ \t-]?[0-9]){16}[ \t-]?[0-9Xx](?![0-9Xx])")


@functools.lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    n = unicodedata.normalize("NFKC", c)
    return n if len(n) == 1 else c  # "…" -> "..." would shift every later position


def _simplify(text: str) -> str:
    try:
        return to_simplified(text)
    except Exception:  # opencc cannot encode e.g. a lone surrogate
        return text


def _normalise(text: str) -> str:
    """NFKC + simplified Chinese, one character for each character of `text`."""
    folded = "".join(map(_fold_char, text))
    simple = _simplify(folded)
    if len(simple) == len(folded):
        return simple
    # A phrase conversion changed the length: convert character by character instead.
    return "".join(s if len(s := _simplify(c)) == 1 else c for c in folded)


def _junk(c: str) -> bool:
    """Whitespace, punctuation, controls and emoji: trimmed from the ends of values and rests."""
    cat = unicodedata.category(c)
    return cat[0] in "PZC" or cat == "So" or c in "~～"


def _trim_span(s: str, i: int, j: int, keep_question: bool = False) -> tuple[int, int]:
    while i < j and _junk(s[i]):
        i += 1
    while j > i and _junk(s[j - 1]) and not (keep_question and s[j - 1] in "?？"):
        j -= 1
    return i, j


def _rest(text: str, start: int, end: int) -> str:
    """`text` without text[start:end], trimmed; "" when only punctuation or particles are left.
    A trailing question mark is kept: it tells the reader the rest is a question."""
    parts = (s[slice(*_trim_span(s, 0, len(s), keep_question=True))] for s in (text[:start], text[end:]))
    return " ".join(p for p in parts if any(c.isalnum() and c not in _PARTICLES for c in p))


def _labels(words: str) -> re.Pattern:
    """Label words (any number, in any order) that end right where a value starts."""
    return re.compile(rf"(?:(?:{words})\s*)+$", re.I)


def _label_start(norm: str, start: int, labels: re.Pattern) -> int:
    lo = max(0, start - 24)
    m = labels.search(norm, lo, start)
    return m.start() if m else start


def _find_mobile(norm: str) -> re.Match | None:
    return _MOBILE.search(_ID_LIKE.sub(lambda m: "#" * len(m.group()), norm))


def _has_other_number(norm: str) -> bool:
    return bool(v.find_id_numbers(norm) or _find_mobile(norm))


def _is_reply(norm: str) -> bool:
    word = re.sub(r"\s+", "", norm).lower()
    return word in _REPLY_WORDS or word.rstrip("".join(_PARTICLES)) in _REPLY_WORDS


# ---------------------------------------------------------------- ID number

_ID_LABELS = _labels(r"身份证号码|身份证号|身份证|证件号码|证件号|号码|是|为|[:：=]")
# Any 15-20 digit run (separators allowed): an ID number with a digit missing or too many.
_DIGIT_RUN = re.compile(r"(?<![0-9])[0-9](?:[ \t-]?[0-9]){14,19}(?:[ \t-]?[Xx])?(?![0-9])")


def _id_number(text: str, norm: str, bare_ok: bool) -> Extraction | None:
    found = v.find_id_numbers(text)
    if found:
        start = text.find(found[0])
        end = start + len(found[0])
    elif m := _DIGIT_RUN.search(norm):
        start, end = m.span()
    else:
        return None
    res = v.validate_id_number(text[start:end])
    rest = _rest(text, _label_start(norm, start, _ID_LABELS), end)
    return Extraction(res.value, res.error, rest, False)


# ---------------------------------------------------------------- real name

_NAME_DOTS = "·•．.・･‧∙⋅\u2027\u30fb\uff65"
_NAME_RUN = re.compile(rf"[{_CJK}]+(?:[{re.escape(_NAME_DOTS)}][{_CJK}]+)*")
_NAME_LABEL = re.compile(
    r"(?<!号)(名字是|名字叫|姓名是|姓名叫|叫做|我叫|我是|姓名|名字|本人|叫)([\s:：]*(?:是[\s:：]*)?)"
)
# Characters that occur in sentences ("我回来了 接着弄吧", "稍等我去拿身份证") but not in names.
_NOT_IN_NAMES = frozenset("我你您他她它们的了吗呢吧啊呀哦嗯么这那哪啥谁去来回等拿弄不没")
# After a weak label ("我是想问一下", "名字写错了") also these verbs and adverbs.
_NOT_AFTER_WEAK_LABEL = frozenset("想说问要在就也还都很太会能给让被把跟写错改填过着看找知道记清楚是有")
_WEAK_NAME_LABELS = frozenset({"我是", "叫", "本人"})


def _name_like(cand: str) -> bool:
    return not (set(cand) & _NOT_IN_NAMES or any(w in cand for w in _ITEM_WORDS) or _is_reply(cand))


def _real_name(text: str, norm: str, bare_ok: bool) -> Extraction | None:
    for label in _NAME_LABEL.finditer(norm):
        run = _NAME_RUN.match(norm, label.end(), label.end() + 40)  # bounded: "叫叫叫…" stays linear
        if not run:
            continue
        start, end = run.span()
        # The name ends at a particle or an item word: "我叫陈美玲身份证号…".
        end = next((i for i in range(start, end) if norm[i] in _PARTICLES or norm.startswith(_ITEM_WORDS, i)), end)
        cand = norm[start:end]
        dotted = any(c in _NAME_DOTS for c in cand)
        # "姓名李建国" has no separator: as weak as "我是…", which is often a sentence.
        weak = label.group(1) in _WEAK_NAME_LABELS or (label.group(1) in ("姓名", "名字") and not label.group(2))
        if not cand or not _name_like(cand) or len(cand) > (20 if dotted else 4 if weak else 5):
            continue  # (5+ characters without "·": "我叫陈美玲今年三十岁" goes on in a sentence)
        if weak and (len(cand) < 2 or set(cand) & _NOT_AFTER_WEAK_LABEL):
            continue
        res = v.validate_real_name(text[start:end])
        return Extraction(res.value, res.error, _rest(text, label.start(), end), False)
    if not bare_ok:
        return None
    start, end = _trim_span(norm, 0, len(norm))
    while end > start and (norm[end - 1] in _PARTICLES or _junk(norm[end - 1])):
        end -= 1
    cand = norm[start:end]
    dotted = any(c in _NAME_DOTS for c in cand)
    if not _NAME_RUN.fullmatch(cand) or not (2 <= len(cand) <= (20 if dotted else 6)) or not _name_like(cand):
        return None
    res = v.validate_real_name(text[start:end])
    return Extraction(res.value, res.error, "", True) if res.ok else None


# ---------------------------------------------------------------- 大鱼号 name

# Bounded content: an unclosed "「「「…" must not cost a scan to the end from every quote.
_QUOTES = ("「」", "“”", '""', "『』", "《》", "''", "‘’")
_QUOTED = re.compile("|".join(f"{o}([^{c}\\n]{{1,64}}){c}" for o, c in _QUOTES))
# A bare 叫 only starts a clause ("叫 数码老李", "它叫…"): "小鱼叫卖" is a name with 叫 in it.
_ACCOUNT_LABEL = re.compile(
    r"(?:(?:我的)?(?:大鱼号(?:的)?(?:名称|名字)?|名称|名字|账号|号)\s*(?:叫做|叫|是|为|[:：])"
    r"|(?:^|(?<=[\s，,。!！?？;；、我它就也])|(?<=好像|应该|现在))(?:叫做|叫))[\s:：]*"
)
_ACCOUNT_LABELS = _labels(r"我的|大鱼号|的|名称|名字|账号|号|叫做|叫|是|为|[:：]")
_ACCOUNT_RUN = re.compile(r"[^\s，,。.!！?？;；~～、]+")
_CLAUSE_BREAK = re.compile(r"[\s，,。!！?？;；、…]")
# Words of sentences about the item, never of an account name.
_SENTENCE_WORDS = ("我的", "我看", "没有", "没找到", "找不到", "不知道", "在哪", "怎么", "什么", "不弄", "不整",
                   "不搞", "放弃", "稍等", "等下", "回来", "接着", "算了", "好的", "可以", "需要", "不用",
                   "忘了", "忘记", "不记得", "不清楚", "不确定", "还没")
_QUESTION_WORDS = ("啥", "哪", "吗", "呢")  # after a label: "大鱼号叫啥来着"


def _account_name(text: str, norm: str, bare_ok: bool) -> Extraction | None:
    if m := _QUOTED.search(norm):
        group = next(g for g in range(1, len(_QUOTES) + 1) if m.group(g) is not None)
        start, end = _trim_span(norm, *m.span(group))
        res = v.validate_account_name(text[start:end])
        rest = _rest(text, _label_start(norm, m.start(), _ACCOUNT_LABELS), m.end())
        return Extraction(res.value, res.error, rest, False)
    for label in _ACCOUNT_LABEL.finditer(norm):
        run = _ACCOUNT_RUN.match(norm, label.end(), label.end() + 64)
        if not run:
            continue
        start, end = run.span()
        while end - start > 1 and norm[end - 1] in "吧啊呀哦呢啦哈嘛":  # "叫数码老李吧"
            end -= 1
        cand = norm[start:end]
        if any(w in cand for w in _SENTENCE_WORDS + _QUESTION_WORDS) or _has_other_number(cand):
            continue
        res = v.validate_account_name(text[start:end])
        return Extraction(res.value, res.error, _rest(text, label.start(), end), False)
    if not bare_ok:
        return None
    start, end = _trim_span(norm, 0, len(norm))
    cand = norm[start:end]
    if (not cand or len(cand) > 30 or _CLAUSE_BREAK.search(cand) or _is_reply(cand)
            or any(w in cand for w in _SENTENCE_WORDS) or _has_other_number(cand)):
        return None
    res = v.validate_account_name(text[start:end])
    return Extraction(res.value, res.error, "", True) if res.ok else None


# ---------------------------------------------------------------- 淘宝 version

_VERSION = re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+)+")
_VERSION_LABELS = _labels(r"淘宝|app|的|版本号|版本|是|为|v|[:：]")


def _taobao_version(text: str, norm: str, bare_ok: bool) -> Extraction | None:
    dotted = norm.replace("。", ".")  # "10。38" typed with the Chinese full stop
    whole = _trim_span(dotted, 0, len(dotted))
    for m in _VERSION.finditer(dotted):
        start, end = m.span()
        label_start = _label_start(norm, start, _VERSION_LABELS)
        # "等了3.5天" is no version: one dot needs a label (版本/V/淘宝) or the whole message.
        if m.group().count(".") >= 2 or label_start < start or (start, end) == whole:
            res = v.validate_taobao_version(text[start:end])
            return Extraction(res.value, res.error, _rest(text, label_start, end), False)
    return None


# ---------------------------------------------------------------- contact

# The lookbehind makes the scan linear on long runs of letters without "@".
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*")
_WECHAT_LABEL = re.compile(
    r"(?:微信号|微信|(?<![A-Za-z0-9])(?:vx|wx|v信)(?=[\s:：是]))[\s:：]*(?:是[\s:：]*)?([A-Za-z0-9_-]+)", re.I
)
_CONTACT_LABELS = _labels(r"我的|手机号码|手机号|手机|电话号码|电话|联系方式|联系电话|号码|邮箱地址|邮箱|邮件|"
                          r"e-?mail|mail|微信号|微信|vx|wx|是|为|[:：]")
_PHONE_ATTEMPT = re.compile(r"\+?[0-9][0-9 -]{3,}[0-9]")


def _contact(text: str, norm: str, bare_ok: bool) -> Extraction | None:
    span = None
    if m := _find_mobile(norm):
        span = m.span()
    elif m := _EMAIL.search(norm):
        span = m.start(), m.end() - len(m.group()) + len(m.group().rstrip(".-"))
    elif m := _WECHAT_LABEL.search(norm):
        span = m.span(1)
    if span:
        res = v.validate_contact(text[span[0]:span[1]])
        rest = _rest(text, _label_start(norm, span[0], _CONTACT_LABELS), span[1])
        return Extraction(res.value, res.error, rest, False)
    start, end = _trim_span(norm, 0, len(norm))
    if not bare_ok or start == end or _is_reply(norm[start:end]):
        return None
    res = v.validate_contact(text[start:end])
    if res.ok:
        return Extraction(res.value, None, "", True)
    if _PHONE_ATTEMPT.fullmatch(norm[start:end]):  # a mistyped mobile: say what is wrong
        return Extraction(None, res.error, "", True)
    return None


# ---------------------------------------------------------------- phone model

_BRANDS = (r"iphone|苹果|华为|huawei|荣耀|honor|小米|xiaomi|红米|redmi|oppo|vivo|iqoo|一加|oneplus|魅族|meizu|"
           r"三星|samsung|galaxy|realme|真我|努比亚|nubia|中兴|zte|摩托罗拉|motorola|moto|mate|nova|pura|pixel")
_MODEL_WORDS = (r"pro|max|plus|ultra|mini|se|lite|note|neo|gt|turbo|fold|flip|play|prime|mate|nova|pura|magic|"
                r"reno|find|civi|ace|edge|galaxy|xr|xs|x|s|a|k|e")
# A model word: anything with a digit ("Mate60", "X100", "14"), a series word, or a CJK edition word.
_MODEL_TOKEN = rf"[A-Za-z0-9]*[0-9][A-Za-z0-9+]*|(?:{_MODEL_WORDS})(?![A-Za-z])\+?|\+|青春版|至尊版|标准版|典藏版|畅享|麦芒"
# A brand must be followed by at least one model word: "华为" alone is not a model.
_PHONE = re.compile(rf"(?<![A-Za-z])(?:{_BRANDS})(?:[ \t]?(?:{_MODEL_TOKEN}))+", re.I)
_PHONE_LABEL = re.compile(r"(?:手机型号|型号|手机|机型)(?:\s*(?:是|为|[:：]))?[\s:：]*|(?:我)?用的是[\s:：]*")
_PHONE_LABELS = _labels(r"我的|我用的是|我用的|用的是|用的|我用|手机型号|型号|手机|机型|是|为|[:：]")
_LABELLED_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9+_ -]*[A-Za-z0-9+]|[A-Za-z0-9]")


def _model_like(cand: str) -> bool:
    """Has a letter or CJK besides digits, and is not a mobile or an ID number."""
    return bool(re.search(rf"[A-Za-z{_CJK}]", cand)) and not _has_other_number(cand)


def _phone_model(text: str, norm: str, bare_ok: bool) -> Extraction | None:
    span = None
    if m := _PHONE.search(norm):
        span = m.span()
    else:
        for label in _PHONE_LABEL.finditer(norm):
            run = _LABELLED_MODEL.match(norm, label.end(), label.end() + 64)
            if run and re.search("[A-Za-z]", run.group()) and _model_like(run.group()):
                span = run.span()
                break
    if span:
        res = v.validate_phone_model(text[span[0]:span[1]])
        rest = _rest(text, _label_start(norm, span[0], _PHONE_LABELS), span[1])
        return Extraction(res.value, res.error, rest, False)
    start, end = _trim_span(norm, 0, len(norm))
    cand = norm[start:end]
    if (not bare_ok or len(cand) > 20 or not re.search("[A-Za-z0-9]", cand) or not _model_like(cand)
            or _is_reply(cand) or any(w in cand for w in _SENTENCE_WORDS)):
        return None
    res = v.validate_phone_model(text[start:end])
    return Extraction(res.value, res.error, "", True) if res.ok else None


# ---------------------------------------------------------------- API

_EXTRACTORS = {"id_number": _id_number, "real_name": _real_name, "account_name": _account_name,
               "taobao_version": _taobao_version, "contact": _contact, "phone_model": _phone_model}


def extract(slot: str, text: str, bare_ok: bool = True) -> Extraction | None:
    """The value of item `slot` found in `text`; None = the message holds no candidate of its kind.

    `bare_ok=False`: the message has another meaning (a yes/no, a command, a question...), so only
    a labelled, quoted or pattern-found value may be returned, never the bare whole message.
    """
    fn = _EXTRACTORS.get(slot)
    if fn is None or not isinstance(text, str) or not text:
        return None
    return fn(text, _normalise(text), bare_ok)


def kind_of_other_value(slot: str, text: str) -> str | None:
    """"id_number" / "mobile" when `text` holds one of those while another item is awaited."""
    if not isinstance(text, str) or not text:
        return None
    if slot != "id_number" and v.find_id_numbers(text):
        return "id_number"
    if slot != "contact" and _find_mobile(_normalise(text)):
        return "mobile"
    return None
