"""What a creator's message means besides a failure prompt: command, yes/no, question, small talk.

`Reader` is built once from a knowledge base (knowledge/intents.yaml, knowledge/faq.yaml) and is,
like the prompt matcher, a pure function of (knowledge base, text). It uses the same machinery:
`clean` normalisation (full-width, traditional -> simplified, no punctuation or emoji), pinyin
sounds for homophone typos, jieba tokens weighted by IDF and rapidfuzz for phrasings.

It only reads; the dialog decides what to do with a `Reading` in its current state.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import jieba
from rapidfuzz import fuzz

from bot.kb import KnowledgeBase
from bot.matching.normalize import clean, phonetic, to_simplified

POLAR = ("affirm", "consent", "deny", "unsure")
_ANSWERS = {"affirm": (True, False, False), "consent": (True, False, True), "deny": (False, False, False),
            "unsure": (None, True, False)}  # (polarity, unsure, consent only) of each answer intent
# Words that turn what follows into the answer that counts: "好的,不过暂时不需要" is a no.
_CONTRAST = re.compile(r"但是|不过|可是|但")
# Fillers a command may carry: "请帮我取消吧" is 取消.
_LEAD_FILLERS = re.compile(r"^(?:请|麻烦|帮我|我想|我要|算了|那就|那)+")
_TAIL_FILLERS = re.compile(r"(?:吧|了|啊|呀|哈|哦|呢|嘛|一下|谢谢)+$")
# A message that asks something or remarks on something is never an item's value.
_QUESTION = re.compile(
    r"[?？]|吗|呢|为什么|为啥|怎么|什么(?!都)|啥(?!都)|哪|多久|多少|几天|几个|几项|是否|能不能|可不可以|能否|"
    r"会不会|要不要|是不是|有没有|咋|如何|行不行|对不对|可以不")
# "这个 / 这一项" in a question means the item the bot is waiting for.
_THIS_ITEM = ("这一项", "这个", "这项", "这些")
ITEM_MARK = "某项"  # what item names become before FAQ phrasings are compared
FAQ_CONFIDENT = 0.78
FAQ_MARGIN = 0.04
PHRASING_FIT = 0.85  # whole-message similarity at which an intent phrasing counts
_STOP = frozenset("的 了 是 我 你 吗 啊 呀 吧 呢 嘛 哦 在 和 就 都 也 还 要 请 把 给 这 那 个 一下 可以 怎么 什么 啥".split())


@dataclass(frozen=True)
class Reading:
    text: str
    command: str | None = None  # cancel, pause, ... (whole-message commands)
    polarity: bool | None = None  # True = affirm or consent, False = deny, None = neither (or unsure)
    consent_only: bool = False  # the yes only agrees (好的, 麻烦了): no answer to a question of fact
    unsure: bool = False
    intents: frozenset[str] = frozenset()  # thanks, greeting, human, not_now, no_prompt, out_of_scope, ...
    question: bool = False
    faq: str | None = None  # id of the FAQ entry it asks (confident)
    faq_score: float = 0.0
    item: str | None = None  # the item it names (a slot name or "route"); "this" = the awaited one
    chit_chat: bool = False  # made only of intent words: no content of its own
    digits: str = ""  # the message, when it is a number (a choice)

    def has(self, intent: str) -> bool:
        return intent in self.intents


@dataclass
class _FaqEntry:
    id: str
    variants: list[str]  # normalised phrasings, item names replaced by ITEM_MARK
    cues: list[str]
    tokens: frozenset[str]
    variant_tokens: list[frozenset[str]]
    cue_sounds: list[str]


class Reader:
    def __init__(self, kb: KnowledgeBase):
        self.kb = kb
        self._commands: dict[str, str] = {}
        self._command_sounds: dict[str, str] = {}
        for name, phrases in kb.commands.items():
            for p in phrases:
                n = clean(p)
                self._commands.setdefault(n, name)
                if len(n) >= 2:
                    self._command_sounds.setdefault(phonetic(n), name)
        # One scanner over every intent cue, longest first: at each position the longest cue wins.
        self._cue_intents: dict[str, set[str]] = {}
        for name, intent in kb.intents.items():
            for cue in intent.cues:
                self._cue_intents.setdefault(clean(cue), set()).add(name)
        self._cue_intents.pop("", None)
        self._scanner = _scanner(self._cue_intents)
        self._phrasings = [(clean(p), name) for name, intent in kb.intents.items() for p in intent.phrasings]
        # Item names, longest first.
        aliases: dict[str, str] = {}
        for slot, item in kb.items.items():
            for a in (item.label, *item.aliases):
                aliases.setdefault(clean(a), slot)
        for a in _THIS_ITEM:
            aliases.setdefault(a, "this")
        aliases.pop("", None)
        self._aliases = aliases
        self._alias_re = re.compile("|".join(map(re.escape, sorted(aliases, key=len, reverse=True))))
        self._faq = [self._faq_entry(f) for f in kb.faq]
        cues = sorted({c for e in self._faq for c in e.cues}, key=len, reverse=True)
        self._faq_cues = re.compile("|".join(map(re.escape, cues))) if cues else None
        df: dict[str, int] = {}
        for e in self._faq:
            for t in e.tokens:
                df[t] = df.get(t, 0) + 1
        self._idf = {t: math.log(1 + len(self._faq) / d) for t, d in df.items()}

    # -- building -----------------------------------------------------------------------
    def _mark_items(self, norm: str) -> str:
        return self._alias_re.sub(ITEM_MARK, norm)

    @staticmethod
    def _tokens(norm: str) -> frozenset[str]:
        return frozenset(t for t in jieba.lcut(norm, HMM=False) if len(t) > 1 and t not in _STOP)

    def _faq_entry(self, f) -> _FaqEntry:
        variants = [self._mark_items(clean(p.replace("{item}", ITEM_MARK))) for p in f.phrasings]
        cues = sorted({clean(c) for c in f.cues if clean(c)}, key=len, reverse=True)
        variant_tokens = [self._tokens(v) - {ITEM_MARK} for v in variants if v]
        tokens = frozenset().union(*variant_tokens, *(self._tokens(c) for c in cues))
        return _FaqEntry(f.id, [v for v in variants if v], cues, tokens, variant_tokens, [phonetic(c) for c in cues])

    # -- reading ------------------------------------------------------------------------
    def read(self, text: str) -> Reading:
        text = text or ""
        norm = clean(text)
        if not norm:
            return Reading(text)
        command = self._command(norm)
        hits = self._scan(norm)
        intents = {name for _, cue, names in hits for name in names} - set(POLAR) - {"neutral"}
        fits: dict[str, float] = {}
        for phrase, name in self._phrasings:
            fit = fuzz.ratio(norm, phrase) / 100
            if fit >= PHRASING_FIT:
                intents.add(name)
                fits[name] = max(fit, fits.get(name, 0.0))
        polarity, unsure, consent_only = self._polarity(norm)
        covered = sum(len(cue) for _, cue, names in hits if names != {"neutral"})
        chit_chat = covered >= 0.6 * len(norm) and not norm.isdigit()
        # A whole-message phrasing of an answer (e.g. one an operator taught from a misread turn)
        # decides it where the cues say nothing, and always when it is the message exactly.
        polar = sorted((fit, name) for name, fit in fits.items() if name in POLAR)
        if polar and (polar[-1][0] >= 1.0 or (polarity is None and not unsure)):
            polarity, unsure, consent_only = _ANSWERS[polar[-1][1]]
            chit_chat = True
        item = None
        m = self._alias_re.search(norm)
        if m:
            item = self._aliases[m.group(0)]
        question = bool(_QUESTION.search(to_simplified(text)))
        # FAQ entries are questions: only a question, or a message with an FAQ cue, is scored.
        faq, faq_score = self._match_faq(norm) if question or self._faq_cue_hit(norm) else (None, 0.0)
        return Reading(text=text, command=command, polarity=polarity, unsure=unsure, consent_only=consent_only,
                       intents=frozenset(intents), question=question, faq=faq, faq_score=faq_score,
                       item=item, chit_chat=chit_chat, digits=norm if norm.isdigit() else "")

    def _faq_cue_hit(self, norm: str) -> bool:
        return self._faq_cues is not None and bool(self._faq_cues.search(norm))

    def _command(self, norm: str) -> str | None:
        lead = _LEAD_FILLERS.sub("", norm)
        for candidate in dict.fromkeys((norm, lead, _TAIL_FILLERS.sub("", norm), _TAIL_FILLERS.sub("", lead))):
            if not candidate:
                continue
            if candidate in self._commands:
                return self._commands[candidate]
            if len(candidate) >= 2 and phonetic(candidate) in self._command_sounds:  # 取消申述 = 取消申诉
                return self._command_sounds[phonetic(candidate)]
        return None

    def _scan(self, norm: str) -> list[tuple[int, str, set[str]]]:
        if self._scanner is None:
            return []
        return [(m.start(), m.group(0), self._cue_intents[m.group(0)]) for m in self._scanner.finditer(norm)]

    def _polarity(self, norm: str) -> tuple[bool | None, bool, bool]:
        """(yes/no, unsure, consent only) of an answer: its first polar cue, in the last contrasted
        part; a consent cue followed by a factual yes ("好的,有") counts as the factual yes."""
        parts = [p for p in _CONTRAST.split(norm) if p]
        decided: tuple[bool | None, bool, bool] = (None, False, False)
        for part in parts:
            scanned = [(cue, [n for n in POLAR if n in names]) for _, cue, names in self._scan(part)
                       if "neutral" not in names]
            polar = [p for _, p in scanned if p]
            if not polar:
                continue
            first = polar[0]
            # A hedge after the answer takes it back: "没有吧 我也不确定" is unsure, not no.
            hedged = any("unsure" in p and "不" in cue for cue, p in scanned[1:])
            if "unsure" in first or hedged:
                decided = (None, True, False)
            elif "deny" in first:
                decided = (False, False, False)
            elif "affirm" in first or any("affirm" in p for p in polar[1:] if "deny" not in p):
                decided = (True, False, False)
            else:
                decided = (True, False, True)
        return decided

    def _match_faq(self, norm: str) -> tuple[str | None, float]:
        if not self._faq:
            return None, 0.0
        marked = self._mark_items(norm)
        sound = phonetic(norm)
        tokens = self._tokens(marked) - {ITEM_MARK}
        weight = sum(self._idf.get(t, 0.0) for t in tokens)
        scored = []
        for e in self._faq:
            score = 0.0
            for v in e.variants:
                score = max(score, _fit(v, marked))
            cue = next((c for c in e.cues if c in norm or c in marked), None)
            if cue is None:  # a homophone typo of a cue (录平 for 录屏): weaker evidence
                cue = next((c for c, cs in zip(e.cues, e.cue_sounds) if len(c) >= 2 and cs in sound), None)
                if cue:
                    score = max(score, 0.8)
                    cue = None
            if cue:
                score = max(score, 0.85 + 0.01 * min(len(cue), 8))
            matched = tokens & e.tokens
            if matched and weight:
                # Token evidence: the share of the message's informative words this entry explains,
                # times how much of its best phrasing the message covers. It also breaks ties between
                # entries found by a cue each ("保存…多久": privacy, not review time).
                precision = sum(self._idf[t] for t in matched) / weight
                recall = max((sum(self._idf.get(t, 0.0) for t in vt & matched) / sum(self._idf.get(t, 0.0) for t in vt)
                              for vt in e.variant_tokens if vt), default=0.0)
                score = max(score, 0.95 * precision * recall) + 0.04 * precision
            scored.append((score, e.id))
        scored.sort(reverse=True)
        (best, best_id), second = scored[0], (scored[1][0] if len(scored) > 1 else 0.0)
        if best >= FAQ_CONFIDENT and (best - second >= FAQ_MARGIN or best >= 0.85):
            return best_id, best
        return None, best


def _fit(variant: str, msg: str) -> float:
    """How well a phrasing matches the message: whole-message similarity, chatter around allowed."""
    whole = fuzz.ratio(variant, msg) / 100
    if len(msg) > len(variant):
        part = fuzz.partial_ratio(variant, msg) / 100 * math.sqrt(len(variant) / len(msg))
        whole = max(whole, part)
    return whole


def _scanner(cues) -> re.Pattern | None:
    words = sorted(cues, key=len, reverse=True)
    if not words:
        return None
    # Latin cues (ok, y, n) only count as whole words: "iphone" holds no "n" answer.
    alts = [rf"(?<![a-z0-9]){re.escape(w)}(?![a-z0-9])" if w.isascii() else re.escape(w) for w in words]
    return re.compile("|".join(alts))
