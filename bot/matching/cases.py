"""Regression cases saved when an operator labels a turn (the web console's /conversations):
knowledge/learned_cases.jsonl, one JSON object a line: the state before the turn (and what the bot
waited for), the creator's message (redacted) and the expected reading (`label`). `python -m bot kb
test` replays them all against the current knowledge; a reload that would break one is refused
unless confirmed.

A label says what the message meant: `intent:<name>`, `command:<name>`, `prompt:<n>`, `faq:<id>`.
What "holds" means for each: the reader gives that command; the reader gives that answer (affirm:
a yes of fact, consent: any yes, deny: a no, unsure) or has that intent, and no command overrides
it; the matcher finds that prompt at `confident`; the reader names that FAQ entry."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bot.kb import KnowledgeBase
from bot.matching.intents import Reader
from bot.matching.matcher import Matcher

CASES_FILE = "learned_cases.jsonl"
LABEL_KINDS = ("intent", "command", "prompt", "faq")


@dataclass(frozen=True)
class Case:
    state: str
    awaiting: str | None
    text: str
    label: str
    line: int = 0

    def describe(self) -> str:
        where = self.state + (f"/{self.awaiting}" if self.awaiting and self.awaiting != self.state else "")
        return f"[{where}] {self.text!r} -> {self.label}"


def cases_path(knowledge_dir) -> Path:
    d = Path(knowledge_dir)
    return (d.parent if d.is_file() else d) / CASES_FILE


def parse_label(label: str) -> tuple[str, str]:
    """'intent:consent' -> ('intent', 'consent'); ValueError for anything else."""
    kind, _, name = (label or "").partition(":")
    if kind not in LABEL_KINDS or not name.strip():
        raise ValueError(f"not a label: {label!r}")
    return kind, name.strip()


def load_cases(knowledge_dir) -> list[Case]:
    path = cases_path(knowledge_dir)
    if not path.exists():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            parse_label(d["label"])
            out.append(Case(d["state"], d.get("awaiting"), d["text"], d["label"], i))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path.name}:{i}: not a case ({exc})") from None
    return out


def append_case(knowledge_dir, state: str, awaiting: str | None, text: str, label: str, by: str) -> Case:
    parse_label(label)
    path = cases_path(knowledge_dir)
    row = {"state": state, "awaiting": awaiting, "text": text, "label": label, "by": by,
           "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    with path.open("a", encoding="utf-8") as fh:
        if existing and not existing.endswith("\n"):
            fh.write("\n")
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Case(state, awaiting, text, label, existing.count("\n") + 1)


def failure(case: Case, reader: Reader, matcher: Matcher) -> str | None:
    """Why the case no longer holds (what the message reads as now), or None when it holds."""
    kind, name = parse_label(case.label)
    rd = reader.read(case.text)
    if kind == "command":
        return None if rd.command == name else f"command {rd.command or '-'}"
    if rd.command:
        return f"command {rd.command}"
    if kind == "intent":
        answer = ("unsure" if rd.unsure else None if rd.polarity is None
                  else ("consent" if rd.consent_only else "affirm") if rd.polarity else "deny")
        ok = {"affirm": answer == "affirm", "consent": answer in ("affirm", "consent"), "deny": answer == "deny",
              "unsure": answer == "unsure"}.get(name, rd.has(name))
        return None if ok else f"answer {answer or '-'}, intents {','.join(sorted(rd.intents)) or '-'}"
    if kind == "faq":
        return None if rd.faq == name else f"faq {rd.faq or '-'}"
    result = matcher.match(case.text)
    if result.id == int(name) and result.tier == "confident":
        return None
    return f"prompt {result.id or '-'} ({result.tier})"


def broken_cases(kb: KnowledgeBase, cases: list[Case]) -> list[tuple[Case, str]]:
    """The cases the base `kb` breaks, with what each message reads as now."""
    if not cases:
        return []
    reader, matcher = Reader(kb), Matcher(kb)
    out = []
    for case in cases:
        why = failure(case, reader, matcher)
        if why is not None:
            out.append((case, why))
    return out


class CasesBroken(Exception):
    """A knowledge change that would break saved cases (`broken`: (case, what it reads as now))."""

    def __init__(self, broken: list[tuple[Case, str]]):
        super().__init__(report(broken))
        self.broken = broken


def report(broken: list[tuple[Case, str]]) -> str:
    return "\n".join(f"{CASES_FILE}:{c.line}: {c.describe()}; now: {why}" for c, why in broken)
