"""Text normalisation shared by the matcher and the knowledge base (pure functions)."""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc
from pypinyin import lazy_pinyin

# Work on at most this many characters: a 1 MB paste costs the same as a long message.
MAX_INPUT_CHARS = 2000

_converter = opencc.OpenCC("t2s")
# "@name" mentions at the start (WeChat puts U+2005 after a mention).
_LEADING_MENTIONS = re.compile(r"^(?:\s*@[^\s\u2005]{1,40}[\s\u2005]+)+")
# Keep CJK ideographs, latin letters and digits; everything else (punctuation, emoji,
# control characters, whitespace) separates nothing in Chinese and is dropped.
_NOT_KEPT = re.compile(r"[^0-9a-z\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002ebef]+")


def strip_mentions(text: str) -> str:
    return _LEADING_MENTIONS.sub("", text)


@lru_cache(maxsize=4096)
def to_simplified(text: str) -> str:
    return _converter.convert(text)


def clean(text: str) -> str:
    """Bounded, simplified, half-width, lower-case text with only ideographs, letters, digits."""
    text = strip_mentions(text[:MAX_INPUT_CHARS])
    text = unicodedata.normalize("NFKC", text).lower()
    text = to_simplified(text)
    return _NOT_KEPT.sub("", text)


class SynonymRewriter:
    """Rewrites variant words to their canonical word, longest variant first, in one pass."""

    def __init__(self, synonyms: dict[str, str]):
        # Canonical words map to themselves so that "人脸" is not rewritten through "脸".
        table = dict(synonyms)
        for canonical in set(synonyms.values()):
            table.setdefault(canonical, canonical)
        self._table = {clean(k): clean(v) for k, v in table.items() if clean(k)}
        words = sorted(self._table, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, words))) if words else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self._table[m.group(0)], text)


_SYLLABLES: dict[str, str] = {}


@lru_cache(maxsize=8192)
def _sound_of(char: str) -> str:
    """One private-use character per toneless pinyin syllable: homophones become equal."""
    if not ("\u3400" <= char <= "\u9fff" or char >= "\U00020000"):
        return char
    syllable = lazy_pinyin(char)[0]
    return _SYLLABLES.setdefault(syllable, chr(0xE000 + len(_SYLLABLES)))


def phonetic(text: str) -> str:
    """`clean` text as sounds, same length: 认正 == 认证, 入住上线 == 入驻上限 (pinyin-input typos)."""
    return "".join(map(_sound_of, text))
