"""A message read as acts: an answer and a question in one message, a choice by ordinal, which item
to edit. Pure functions of (reader, text); the dialog decides what to do with them.

A creator often says two things at once: "可以，那材料要准备些啥" agrees *and* asks; "叫 数码老李，
对了后面要拍视频吗" gives a value *and* asks. The dialog applies them in one order: the value or the
answer to the pending question first, then the question is answered, then what comes next is asked.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.matching.intents import Reader, Reading
from bot.matching.normalize import to_simplified

# Where one act ends and the next begins: punctuation, spaces, and the turn words that open a new
# clause ("对了", "那", "不过" …).
_CLAUSE_END = re.compile(r"[\s,，.。!！?？;；~～、…]+")
_OPENERS = re.compile(r"^(?:对了|那|那么|另外|还有|顺便问下|顺便问一下|不过|但是|可是|就是)")
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
              "十一": 11, "十二": 12, "十三": 13}
_ORDINAL = re.compile(r"第\s*([0-9]{1,2}|十[一二三]?|[一二两三四五六七八九])\s*(?:个|项|张|条|种|号)?")
_NUMBER = re.compile(r"(?<![0-9])([0-9]{1,2})(?![0-9.])")
_CN_ALONE = re.compile(r"^(?:选|是|就|应该是|好像是|大概是)?\s*([一二两三四五六七八九]|十[一二三]?)\s*(?:个|项|张|条)?"
                       r"\s*(?:吧|吗|啊|呀|哈|的|了)*$")


@dataclass(frozen=True)
class Split:
    """An answer (yes/no/unsure, or a value) followed by a question, as two readings."""
    answer: Reading
    question: Reading


def clauses(text: str) -> list[str]:
    return [c for c in _CLAUSE_END.split(text or "") if c]


def answer_then_question(reader: Reader, text: str) -> Split | None:
    """'行，不过要准备哪些东西啊' -> (行, 要准备哪些东西啊): leading clauses that only answer yes/no,
    then a question. None when the message is not of that shape."""
    parts = clauses(text)
    if len(parts) < 2:
        return None
    for i in range(1, len(parts)):
        head, tail = "".join(parts[:i]), "".join(parts[i:])
        first = reader.read(head)
        if first.polarity is None and not first.unsure:
            return None
        if not first.chit_chat or first.question:
            continue
        rest = reader.read(_OPENERS.sub("", tail) or tail)
        if rest.question or rest.faq:
            return Split(first, rest)
    return None


def choice_number(text: str, count: int) -> int | None:
    """The option a reply picks in a numbered list: '2', '第二个', '好像是第二个吧', '选2'. None
    when it names none, or one out of range."""
    s = to_simplified(unicodedata.normalize("NFKC", text or "")).strip()
    n = None
    m = _ORDINAL.search(s)
    if m:
        g = m.group(1)
        n = int(g) if g.isdigit() else _CN_DIGITS.get(g)
    else:
        numbers = _NUMBER.findall(s)
        if len(numbers) == 1 and len(re.sub(r"[^0-9]", "", s)) <= 2:
            n = int(numbers[0])
        else:
            m = _CN_ALONE.match(s)
            if m:
                n = _CN_DIGITS.get(m.group(1))
    if n is None or not 0 <= n <= count:
        return None
    return n


def edit_target(reading: Reading, text: str, slots: list[str]) -> str | None:
    """Which item a correction names: by name ('姓名填错了', '改一下身份证号') or by its number in
    the list ('修改 2'). `slots` are the route's items in order. None: an edit of nothing named."""
    if reading.item and reading.item in slots:
        return reading.item
    n = choice_number(text, len(slots))
    if n:
        return slots[n - 1]
    return None
