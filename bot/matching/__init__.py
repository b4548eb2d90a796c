"""Understanding a message: which failure prompt it is (`Matcher`), and what else it says
(`intents.Reader`: a command, a yes/no, a question, small talk). Pure functions of (knowledge base,
text).

    matcher.py     prompt matching: normalise -> synonyms/pinyin -> jieba (IDF) -> rapidfuzz
    intents.py     the reader: commands, yes/no, FAQ questions, items, small talk
    normalize.py   text normalisation shared with the knowledge base
    cases.py       the regression cases operators saved (knowledge/learned_cases.jsonl), replayed
"""
from bot.matching.matcher import MatchResult, Matcher

__all__ = ["Matcher", "MatchResult"]
