"""Which failure prompt is a creator's message about?

Pipeline (after Baidu AnyQ's analysis -> retrieval -> matching -> ranking):
1. normalise (bounded, traditional -> simplified, half-width, no punctuation/emoji), rewrite
   synonyms to canonical words;
2. character evidence: rapidfuzz alignment of the message against each prompt's variants (its
   text, each clause of it, our phrasings) — robust to OCR and typing typos, and to chatter;
3. token evidence: jieba tokens weighted by how specific they are to one prompt (IDF over the
   prompts), against each prompt's vocabulary — for paraphrases;
4. rank, and decide a tier: `confident` / `suggest` / `none`.

The matcher is a pure function of (knowledge base, text); everything derived from the base is
built once in `Matcher.__init__` so a reload builds a new Matcher and swaps it in.
"""
from __future__ import annotations

import heapq
import math
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import jieba
from rapidfuzz import fuzz

from bot.kb import KnowledgeBase
from bot.matching.normalize import SynonymRewriter, clean, phonetic

CONFIDENT_SCORE = 0.72
CONFIDENT_MARGIN = 0.08
SUGGEST_SCORE = 0.45
CLEAR_TEXT_MATCH = 0.9  # character fit at which the message plainly quotes a prompt
SOUND_ALIKE_WEIGHT = 0.9  # a match by pinyin (homophone typos) is a little weaker than by characters
MAX_ALTERNATIVES = 3
MIN_CLAUSE_CHARS = 4
# Retrieval: with more prompts than this, only the RETRIEVE_TOP entries sharing the most specific
# character bigrams with the message are scored in full (AnyQ's retrieval -> matching split).
FULL_SCAN_LIMIT = 64
RETRIEVE_TOP = 24

# Function words and chat filler: no evidence for any prompt.
_STOPWORDS = frozenset("""
的 了 是 我 你 他 她 它 吗 啊 呀 吧 呢 嘛 哦 哈 么 在 和 与 跟 及 或 就 都 也 还 又 要 让 叫 说 请 把 被 给 这 那 个 一 一直 总是 老是 为啥
为什么 怎么 怎么办 咋 咋办 啥 什么 如何 提示 显示 出现 一下 一个 时候 之后 以后 然后 但是 可是 明明 到底 已经 进行 按 上 下 里 中 后 前 时
""".split())

def _bigrams(text: str) -> set[str]:
    return {text[i:i + 2] for i in range(len(text) - 1)} or ({text} if text else set())


_CLAUSE_SPLIT = re.compile(r"[,，。.;；:：!！?？、“”\"'‘’()（）]+")


@dataclass(frozen=True)
class MatchResult:
    text: str
    id: int | None
    group: str | None
    tier: str  # confident | suggest | none
    score: float
    alternatives: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"text": self.text, "id": self.id, "group": self.group, "tier": self.tier,
                "score": round(self.score, 4), "alternatives": self.alternatives}


@dataclass
class _Variant:
    text: str  # normalised, synonyms rewritten
    tokens: frozenset[str]
    distinct: float  # 1 = only this prompt says it, 0 = another prompt says the same
    sound: str = ""  # phonetic(text)

    def __post_init__(self):
        self.sound = phonetic(self.text)


@dataclass
class _Entry:
    id: int
    group: str
    variants: list[_Variant]
    vocabulary: frozenset[str]
    keywords: frozenset[str]
    wildcard: re.Pattern | None
    reports_failure: bool = True  # its own text says something failed (most do; 3 and 16 don't)


_jieba_lock = threading.Lock()
_userdicts_loaded: set[str] = set()


def _ensure_jieba(userdict) -> None:
    """Initialise jieba (cached prefix dict) and load each user dictionary once per process."""
    with _jieba_lock:
        if not _userdicts_loaded:
            jieba.setLogLevel(60)
            jieba.initialize()
            _userdicts_loaded.add("")
        if userdict is not None:
            key = f"{userdict}@{userdict.stat().st_mtime_ns}"  # an edited file is read again on reload
            if key not in _userdicts_loaded:
                jieba.load_userdict(str(userdict))
                _userdicts_loaded.add(key)


class Matcher:
    def __init__(self, kb: KnowledgeBase, extra_words: tuple[str, ...] = ()):
        _ensure_jieba(kb.userdict)
        for w in (*extra_words, *kb.context_words, *kb.synonyms.values()):
            if len(w) > 1:
                jieba.add_word(clean(w), freq=None)
        self.kb = kb
        self._rewrite = SynonymRewriter(kb.synonyms)
        self._context = frozenset(self._norm(w) for w in kb.context_words)
        self._off_topic = [self._norm(w) for w in kb.off_topic_words]
        self._failure = [self._norm(w) for w in kb.failure_words]
        self._entries = [self._build_entry(p) for p in kb.prompts]
        for e in self._entries:
            e.reports_failure = any(w in e.variants[0].text for w in self._failure)
        self._idf = self._build_idf()
        self._bigrams, self._bigram_idf = self._build_bigram_index()
        self._mark_distinct_variants()

    # -- building -------------------------------------------------------------------------
    def _norm(self, text: str) -> str:
        return self._rewrite(clean(text))

    def _tokens(self, text_norm: str) -> frozenset[str]:
        return frozenset(t for t in jieba.lcut(text_norm, HMM=False)
                         if len(t) > 1 and t not in _STOPWORDS)

    def _build_entry(self, p) -> _Entry:
        raw = p.text
        wildcard = None
        if p.wildcard:
            before, _, after = raw.partition(p.wildcard)
            raw = before + after
            # A few characters either side of the placeholder anchor a name of any length.
            left, right = self._norm(before)[-4:], self._norm(after)[:4]
            wildcard = re.compile(re.escape(left) + r"(.{1,24}?)" + re.escape(right))
        texts = [raw, *p.phrasings]
        clauses = [c for c in _CLAUSE_SPLIT.split(raw) if len(clean(c)) >= MIN_CLAUSE_CHARS]
        if len(clauses) > 1:
            texts += clauses
        variants = []
        for t in dict.fromkeys(texts):
            n = self._norm(t)
            if n:
                variants.append(_Variant(n, self._tokens(n), 1.0))
        keywords = frozenset(self._norm(k) for k in p.keywords if self._norm(k))
        vocabulary = frozenset().union(*(v.tokens for v in variants),
                                       *(self._tokens(k) for k in keywords), keywords)
        return _Entry(p.id, p.group, variants, vocabulary, keywords, wildcard)

    def _build_idf(self) -> dict[str, float]:
        n = len(self._entries)
        df: dict[str, int] = {}
        for e in self._entries:
            for t in e.vocabulary:
                df[t] = df.get(t, 0) + 1
        return {t: math.log(1 + n / d) for t, d in df.items()}

    def _build_bigram_index(self) -> tuple[dict[str, list[int]], dict[str, float]]:
        postings: dict[str, set[int]] = defaultdict(set)
        for i, e in enumerate(self._entries):
            for text in (*(v.text for v in e.variants), *e.keywords):
                for bg in _bigrams(text):
                    postings[bg].add(i)
        n = len(self._entries)
        return ({bg: sorted(ids) for bg, ids in postings.items()},
                {bg: math.log(1 + n / len(ids)) for bg, ids in postings.items()})

    def _candidates(self, text: str, exclude: int | None = None) -> list[int]:
        """Indices of the entries worth scoring for `text`: all of them for a small base."""
        if len(self._entries) <= FULL_SCAN_LIMIT:
            return [i for i in range(len(self._entries)) if i != exclude]
        weight: dict[int, float] = defaultdict(float)
        for bg in _bigrams(text):
            ids = self._bigrams.get(bg)
            if ids and len(ids) <= len(self._entries) // 4:  # skip bigrams nearly every entry has
                idf = self._bigram_idf[bg]
                for i in ids:
                    weight[i] += idf
        weight.pop(exclude, None)
        return [i for i, _ in heapq.nlargest(RETRIEVE_TOP, weight.items(), key=lambda kv: kv[1])]

    def _mark_distinct_variants(self) -> None:
        # A clause another prompt also says ("请确保是账户本人操作" in 1 and 2) is weak evidence.
        for index, e in enumerate(self._entries):
            for v in e.variants:
                others = [o.text for i in self._candidates(v.text, exclude=index) for o in self._entries[i].variants]
                best = max((fuzz.ratio(v.text, o) for o in others), default=0.0) / 100
                v.distinct = 1.0 - max(0.0, (best - 0.7) / 0.3)  # penalise near-duplicates only

    # -- matching -------------------------------------------------------------------------
    @staticmethod
    def _fit(variant: str, msg: str) -> float:
        """How well a variant's characters appear in the message (0..1)."""
        if len(msg) >= len(variant):
            return fuzz.partial_ratio(variant, msg) / 100
        # The message is shorter: a fragment covers only part of the variant.
        return fuzz.partial_ratio(msg, variant) / 100 * math.sqrt(len(msg) / len(variant))

    def _score_entry(self, e: _Entry, msg: str, msg_sound: str, tokens: frozenset[str],
                     domain_weight: float) -> tuple[float, float]:
        """(plain character fit of the best variant, combined score, token evidence)."""
        m = msg
        if e.wildcard is not None:
            m = e.wildcard.sub(lambda mo: mo.group(0)[:4] + mo.group(0)[-4:], m)
            msg_sound = phonetic(m)
        char = fit = 0.0
        for v in e.variants:
            f = self._fit(v.text, m)
            if f < 1.0:
                f = max(f, SOUND_ALIKE_WEIGHT * self._fit(v.sound, msg_sound))
            fit = max(fit, f)
            char = max(char, f * (0.55 + 0.45 * v.distinct))
        matched = tokens & e.vocabulary
        if not matched:
            return fit, char, 0.0
        idf = self._idf
        got = sum(idf[t] for t in matched)
        # Recall against the variant it best covers, precision against the message's domain words.
        recall = max((sum(idf[t] for t in v.tokens & matched) / sum(idf[t] for t in v.tokens)
                      for v in e.variants if v.tokens), default=0.0)
        keyword_recall = min(1.0, got / max(1e-9, min(sum(idf[t] for t in e.vocabulary), 2 * math.log(2))))
        precision = got / domain_weight if domain_weight else 0.0
        token = precision * (0.6 * recall + 0.4 * keyword_recall)
        if e.keywords & (matched | {k for k in e.keywords if k in m}):
            token = min(1.0, token + 0.1)
        return fit, max(char, 0.5 * char + 0.5 * token), token

    def match(self, text: str) -> MatchResult:
        msg = self._norm(text)
        if not msg:
            return MatchResult(text, None, None, "none", 0.0)
        tokens = self._tokens(msg)
        msg_sound = phonetic(msg)
        domain_weight = sum(self._idf.get(t, 0.0) for t in tokens)
        scored = []
        for e in (self._entries[i] for i in self._candidates(msg)):
            char, total, token = self._score_entry(e, msg, msg_sound, tokens, domain_weight)
            scored.append((total, token, char, e))
        if not scored:
            return MatchResult(text, None, None, "none", 0.0)
        scored.sort(key=lambda s: (s[0], s[1]), reverse=True)  # ties go to the better token evidence
        top_score, _, top_char, top = scored[0]
        second = scored[1][0] if len(scored) > 1 else 0.0
        tier = 0  # 0 none, 1 suggest, 2 confident
        if top_score >= SUGGEST_SCORE:
            tier = 2 if top_score >= CONFIDENT_SCORE and top_score - second >= CONFIDENT_MARGIN else 1
            if top_char < CLEAR_TEXT_MATCH:
                # Paraphrase territory: demand the shape of a verification failure report.
                if not any(c in msg for c in self._context):
                    tier = min(tier, 1)
                if top.reports_failure and not any(w in msg for w in self._failure):
                    tier -= 1
                if any(w in msg for w in self._off_topic):
                    tier -= 1
        tier = ("none", "suggest", "confident")[max(tier, 0)]
        alternatives = [{"id": e.id, "score": round(s, 4)} for s, _, _, e in scored[1:MAX_ALTERNATIVES + 1]
                        if s >= SUGGEST_SCORE * 0.8]
        if tier == "none":
            return MatchResult(text, None, None, "none", round(top_score, 4), alternatives)
        return MatchResult(text, top.id, top.group, tier, round(top_score, 4), alternatives)
