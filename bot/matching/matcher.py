"""Which failure prompt is a creator's message about?

Pipeline (after Baidu AnyQ's analysis -> retrieval -> matching -> ranking):
1. normalise (bounded, traditional -> simplified, half-width, no punctuation/emoji), rewrite
   synonyms to canonical words;
2. character evidence: rapidfuzz alignment of the message against each prompt's variants (its
   text, each clause of it, our phrasings) — robust to OCR and typing typos, and to chatter;
3. token evidence: jieba tokens weighted by how specific they are to one prompt (IDF over the
   prompts), against each prompt's vocabulary — for paraphrases;
4. information: a word that is generic in this domain (made only of context, failure and function
   words: 认证, 实名, 失败, 提示 …) carries little of its IDF. A variant (clause, phrasing) counts
   in proportion to the information its words carry ("失败提示" says almost nothing), and a prompt
   is a candidate at all only when the message shares enough informative words with it, or quotes
   an informative variant of it, and contains one of its `requires` words if it has any;
5. rank the candidates, and decide a tier: `confident` / `suggest` / `none`; a failure report
   that matches nothing is `vague` (the dialog asks what the page said).

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

jieba.setLogLevel(60)  # quiet: jieba logs loading its dictionary at DEBUG (intents.py too: the package imports this first)

CONFIDENT_SCORE = 0.72
CONFIDENT_MARGIN = 0.08
SUGGEST_SCORE = 0.45
CLEAR_TEXT_MATCH = 0.9  # character fit at which the message plainly quotes a prompt
SOUND_ALIKE_WEIGHT = 0.9  # a match by pinyin (homophone typos) is a little weaker than by characters
MAX_ALTERNATIVES = 3
MIN_CLAUSE_CHARS = 4
# Information of a word = its IDF above that of a word every prompt has, log(1 + n/df) - log 2.
# A word made only of domain-generic words (context, failure, function words) keeps this share.
GENERIC_WEIGHT = 0.3
# Information a message must share with a prompt (in words of its vocabulary or its keywords) for
# the prompt to be a candidate: that of one informative word a quarter of the prompts use
# (log(1 + 4) - log 2); generic words alone rarely get there.
EVIDENCE_MIN = math.log(2.5)
# A variant carrying the information of a word a ninth of the prompts use (log(1 + 9) - log 2)
# counts in full; one carrying less, in proportion (square root): "失败提示" weighs about 0.5.
INFO_FULL = math.log(5)
# Retrieval: with more prompts than this, only the RETRIEVE_TOP entries sharing the most specific
# character bigrams with the message are scored in full (AnyQ's retrieval -> matching split).
FULL_SCAN_LIMIT = 64
RETRIEVE_TOP = 24

# Function words and chat filler: no evidence for any prompt.
_STOPWORDS = frozenset("""
的 了 是 我 你 他 她 它 吗 啊 呀 吧 呢 嘛 哦 哈 么 在 和 与 跟 及 或 就 都 也 还 又 要 让 叫 说 请 把 被 给 这 那 个 一 一直 总是 老是 为啥
为什么 怎么 怎么办 咋 咋办 啥 什么 如何 提示 显示 出现 一下 一个 时候 之后 以后 然后 但是 可是 明明 到底 已经 进行 按 上 下 里 中 后 前 时
您 您的 我的 还是 因为 所以 自己 是不是 直接 有 没有 能 会 可 可以 得 去 来 着 再 才 点 下来 出来 起来 回事 情况 问题
""".split())

# Negations that report no failure: A-not-A questions (是不是, 会不会, 有没有) and a few set phrases.
_NOT_A_FAILURE = re.compile(r"(.)[不没]\1|不想|不知道|不用|不要紧|不错|不好意思|不客气")


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
    # A verification-failure report (context word + failure word, nothing off-topic) that names
    # nothing specific enough to match (tier none). The dialog asks what the page said.
    vague: bool = False

    def as_json(self) -> dict:
        return {"text": self.text, "id": self.id, "group": self.group, "tier": self.tier,
                "score": round(self.score, 4), "alternatives": self.alternatives, "vague": self.vague}


@dataclass
class _Variant:
    text: str  # normalised, synonyms rewritten
    tokens: frozenset[str]
    distinct: float  # 1 = only this prompt says it, 0 = another prompt says the same
    sound: str = ""  # phonetic(text)
    chars: frozenset = frozenset()  # its characters, and those of its sound (a cheap bound on fits)
    sound_chars: frozenset = frozenset()
    info: float = 0.0  # information of its words
    weight: float = 1.0  # how much it tells: sqrt(info / INFO_FULL), at most 1

    def __post_init__(self):
        self.sound = phonetic(self.text)
        self.chars, self.sound_chars = frozenset(self.text), frozenset(self.sound)


@dataclass
class _Entry:
    id: int
    group: str
    variants: list[_Variant]
    vocabulary: frozenset[str]
    keywords: frozenset[str]
    wildcard: re.Pattern | None
    requires: tuple[tuple[str, str], ...] = ()  # (word, its sound): the message must contain one
    reports_failure: bool = True  # its own text says something failed (most do; 3 and 16 don't)
    keyword_info: dict[str, float] = field(default_factory=dict)  # keywords: never discounted as generic


_jieba_lock = threading.Lock()
_userdicts_loaded: set[str] = set()


def _ensure_jieba(userdict) -> None:
    """Initialise jieba (cached prefix dict) and load each user dictionary once per process."""
    with _jieba_lock:
        if not _userdicts_loaded:
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
        self._domain_words = tuple(dict.fromkeys(w for w in (*self._context, *self._failure) if len(w) > 1))
        self._entries = [self._build_entry(p) for p in kb.prompts]
        self._generic_parts = frozenset((*_STOPWORDS, *self._common_domain_words()))
        self._generic_cache: dict[str, bool] = {}
        for e in self._entries:
            e.reports_failure = any(w in e.variants[0].text for w in self._failure)
        self._idf = self._build_idf()
        self._weigh_information()
        self._bigrams, self._bigram_idf = self._build_bigram_index()
        self._mark_distinct_variants()

    # -- building -------------------------------------------------------------------------
    def _norm(self, text: str) -> str:
        return self._rewrite(clean(text))

    def _tokens(self, text_norm: str) -> frozenset[str]:
        words = {t for t in jieba.lcut(text_norm, HMM=False) if len(t) > 1 and t not in _STOPWORDS}
        # Domain words count wherever they are, inside a compound (未知客户端 -> 客户端) or across
        # jieba's boundaries (公安网上 -> 公安 网上 -> 公安网).
        words.update(w for w in self._domain_words if w in text_norm)
        return frozenset(words)

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
        requires = tuple((w, phonetic(w)) for w in dict.fromkeys(self._norm(r) for r in p.requires) if w)
        return _Entry(p.id, p.group, variants, vocabulary, keywords, wildcard, requires)

    def _common_domain_words(self) -> list[str]:
        """Context and failure words that say little here: several prompts use them (认证, 实名,
        失败, 不), or none does. One only a single prompt uses (闪退, 空白, 入驻) is its symptom."""
        users: dict[str, int] = {}
        for e in self._entries:
            texts = [v.text for v in e.variants]
            for w in {*self._context, *self._failure}:
                if w and any(w in t for t in texts):
                    users[w] = users.get(w, 0) + 1
        return [w for w in (*self._context, *self._failure) if w and users.get(w, 0) != 1]

    def _generic(self, word: str) -> bool:
        """True when `word` is made only of context, failure and function words (认证失败, 没有)."""
        hit = self._generic_cache.get(word)
        if hit is None:
            parts, n = self._generic_parts, len(word)
            ok = [True] + [False] * n  # ok[i]: word[:i] splits into generic parts
            for i in range(1, n + 1):
                ok[i] = any(ok[j] and word[j:i] in parts for j in range(max(0, i - 8), i))
            hit = self._generic_cache[word] = ok[n]
        return hit

    def _information(self, word: str) -> float:
        idf = self._idf.get(word)
        if idf is None:
            return 0.0
        return max(0.0, idf - math.log(2)) * (GENERIC_WEIGHT if self._generic(word) else 1.0)

    def _weigh_information(self) -> None:
        self._info = {t: self._information(t) for t in self._idf}
        for e in self._entries:
            e.keyword_info = {k: max(0.0, self._idf[k] - math.log(2)) for k in e.keywords}
            for v in e.variants:
                v.info = self._shared_information(v.tokens, {})
                v.weight = math.sqrt(min(1.0, v.info / INFO_FULL))

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
    def _fit(variant: str, msg: str, cutoff: float = 0.0) -> float:
        """How well a variant's characters appear in the message (0..1); 0 if below `cutoff`."""
        if len(msg) >= len(variant):
            return fuzz.partial_ratio(variant, msg, score_cutoff=cutoff * 100) / 100
        # The message is shorter: a fragment covers only part of the variant.
        scale = math.sqrt(len(msg) / len(variant))
        if cutoff > scale:
            return 0.0
        return fuzz.partial_ratio(msg, variant, score_cutoff=cutoff / scale * 100) / 100 * scale

    def _quotes(self, e: _Entry, m: str, m_sound: str) -> bool:
        """Does the message clearly quote an informative variant (weighted fit >= CLEAR_TEXT_MATCH)?

        Before aligning, a cheap bound from the characters the two share: an alignment of the
        shorter string (n long) misses at least its d distinct absent characters, so the fit is at
        most 2(n-d)/(2n-d) (times the short-message scale)."""
        chars, sound_chars, size = frozenset(m), frozenset(m_sound), len(m)
        for v in e.variants:
            if v.weight < CLEAR_TEXT_MATCH:
                continue
            need = CLEAR_TEXT_MATCH / v.weight
            if size >= len(v.text):
                n, d, sd, scale = len(v.text), len(v.chars - chars), len(v.sound_chars - sound_chars), 1.0
            else:
                n, d, sd = size, len(chars - v.chars), len(sound_chars - v.sound_chars)
                scale = math.sqrt(size / len(v.text))
            if 2 * (n - d) / (2 * n - d) * scale >= need and self._fit(v.text, m, need):
                return True
            need /= SOUND_ALIKE_WEIGHT
            if need <= 1.0 and 2 * (n - sd) / (2 * n - sd) * scale >= need and self._fit(v.sound, m_sound, need):
                return True
        return False

    def _score_entry(self, e: _Entry, msg: str, msg_sound: str, tokens: frozenset[str],
                     domain_weight: float) -> tuple[float, float, float, float] | None:
        """(character fit of the best variant, combined score, token evidence, shared information),
        or None when the prompt is no candidate: the message shares too little information with it
        and quotes none of its informative variants.

        Character fits count in proportion to what the variant tells (its weight): a message that
        contains the clause "失败提示" has not said much about prompt 14."""
        m = msg
        if e.wildcard is not None:
            m = e.wildcard.sub(lambda mo: mo.group(0)[:4] + mo.group(0)[-4:], m)
            msg_sound = phonetic(m)
        hit_keywords = {k for k in e.keywords if k in m}
        matched = tokens & e.vocabulary
        shared = self._shared_information(matched | hit_keywords, e.keyword_info)
        if shared < EVIDENCE_MIN and not self._quotes(e, m, msg_sound):
            return None
        char = fit = 0.0
        for v in e.variants:
            f = self._fit(v.text, m)
            if f < 1.0:
                f = max(f, SOUND_ALIKE_WEIGHT * self._fit(v.sound, msg_sound))
            f *= v.weight
            fit = max(fit, f)
            char = max(char, f * (0.55 + 0.45 * v.distinct))
        info = self._info
        if not matched:
            return fit, char, 0.0, shared
        idf = self._idf
        got = sum(idf[t] for t in matched)
        # Recall (by IDF) against the variant it best covers; precision against the information of
        # the message's domain words: generic words (认证, 失败 …) neither explain nor dilute much.
        recall = max((sum(idf[t] for t in v.tokens & matched) / sum(idf[t] for t in v.tokens)
                      for v in e.variants if v.tokens), default=0.0)
        keyword_recall = min(1.0, got / max(1e-9, min(sum(idf[t] for t in e.vocabulary), 2 * math.log(2))))
        explained = sum(info[t] for t in matched)
        precision = min(1.0, explained / domain_weight) if domain_weight else 0.0
        token = precision * (0.6 * recall + 0.4 * keyword_recall)
        if e.keywords & (matched | hit_keywords):
            token = min(1.0, token + 0.1)
        return fit, max(char, 0.5 * char + 0.5 * token), token, shared

    def _shared_information(self, words: set[str], keyword_info: dict[str, float]) -> float:
        """Information of a set of words (those a message shares with a prompt, or a variant's):
        the prompt's own keywords are informative by declaration (验证失败), and a word inside
        another of the words (实名 in 实名认证, 违规 in 违规管理规则) adds nothing new."""
        info = self._info
        return sum(keyword_info.get(w) or info.get(w, 0.0) for w in words
                   if not any(w != u and w in u for u in words))

    @staticmethod
    def _has_required(e: _Entry, msg: str, msg_sound: str) -> bool:
        return not e.requires or any(w in msg or s in msg_sound for w, s in e.requires)

    def _report_shape(self, msg: str) -> bool:
        """Reads like a verification-failure report: a context word, a failure word, nothing off-topic."""
        return (any(c in msg for c in self._context) and self._says_failure(msg)
                and not any(w in msg for w in self._off_topic))

    def _says_failure(self, msg: str) -> bool:
        msg = _NOT_A_FAILURE.sub("", msg)
        return any(w in msg for w in self._failure)

    def match(self, text: str) -> MatchResult:
        msg = self._norm(text)
        if not msg:
            return MatchResult(text, None, None, "none", 0.0)
        tokens = self._tokens(msg)
        msg_sound = phonetic(msg)
        domain_weight = sum(self._info.get(t, 0.0) for t in tokens)
        scored = []
        for e in (self._entries[i] for i in self._candidates(msg)):
            if not self._has_required(e, msg, msg_sound):
                continue
            # A candidate only with evidence of its own: informative words in common, or a clear quote.
            evidence = self._score_entry(e, msg, msg_sound, tokens, domain_weight)
            if evidence is not None:
                char, total, token, shared = evidence
                scored.append((total, token, char, e, shared))
        if not scored:
            return MatchResult(text, None, None, "none", 0.0, vague=self._report_shape(msg))
        scored.sort(key=lambda s: (s[0], s[1]), reverse=True)  # ties go to the better token evidence
        top_score, _, top_char, top, top_shared = scored[0]
        second = scored[1][0] if len(scored) > 1 else 0.0
        tier = 0  # 0 none, 1 suggest, 2 confident
        if top_score >= SUGGEST_SCORE:
            tier = 2 if top_score >= CONFIDENT_SCORE and top_score - second >= CONFIDENT_MARGIN else 1
            # Another prompt accounts for clearly more of what the message says: not sure enough.
            if max(s[4] for s in scored) > top_shared + EVIDENCE_MIN:
                tier = min(tier, 1)
            if top_char < CLEAR_TEXT_MATCH:
                # Paraphrase territory: demand the shape of a verification failure report.
                if not any(c in msg for c in self._context):
                    tier = min(tier, 1)
                if top.reports_failure and not self._says_failure(msg):
                    tier -= 1
                if any(w in msg for w in self._off_topic):
                    tier -= 1
        tier = ("none", "suggest", "confident")[max(tier, 0)]
        alternatives = [{"id": e.id, "score": round(s, 4)} for s, _, _, e, _ in scored[1:MAX_ALTERNATIVES + 1]
                        if s >= SUGGEST_SCORE * 0.8]
        if tier == "none":
            return MatchResult(text, None, None, "none", round(top_score, 4), alternatives,
                               vague=self._report_shape(msg))
        return MatchResult(text, top.id, top.group, tier, round(top_score, 4), alternatives)
