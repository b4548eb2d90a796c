from bot.matching.matcher import MatchResult, Matcher

__all__ = ["Matcher", "MatchResult"]
