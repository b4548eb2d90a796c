"""Phrasings operators teach from the web console, kept in their own file (knowledge/learned.yaml):
the hand-written knowledge files are never rewritten. A change is validated by loading the whole
base; if that fails, the file is put back as it was and the error is returned.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from bot.kb.errors import KnowledgeError
from bot.kb.loader import KnowledgeBase, load_knowledge

LEARNED_FILE = "learned.yaml"
HEADER = ("# Phrasings added by operators from the web console (/unmatched, /conversations). Merged by the\n"
          "# loader into the prompts, FAQ entries, intents and commands they name. Edit or delete freely, then #reload.\n")


def _write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".learned.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


SECTIONS = {"prompt": "prompt_phrasings", "faq": "faq_phrasings", "intent": "intent_phrasings",
            "command": "command_phrasings"}


def add_phrasing(knowledge_dir: Path, kind: str, target: str | int, phrase: str, check=None) -> KnowledgeBase:
    """Add `phrase` to prompt `target` (kind "prompt"), FAQ entry, intent or command `target`
    (kind "faq", "intent", "command").

    Returns the new, validated base; raises KnowledgeError (and leaves the file as it was). `check`,
    when given, is called with the new base before it is kept: whatever it raises puts the file
    back too (the console refuses a phrasing that breaks a saved case unless confirmed)."""
    phrase = " ".join(phrase.split())
    if not phrase:
        raise KnowledgeError(knowledge_dir, None, "empty phrasing")
    path = Path(knowledge_dir) / LEARNED_FILE
    before = path.read_text(encoding="utf-8") if path.exists() else None
    data = (yaml.safe_load(before) if before else None) or {}
    if kind not in SECTIONS:
        raise KnowledgeError(knowledge_dir, None, f"unknown kind of phrasing {kind!r}")
    section = data.setdefault("learned", {}).setdefault(SECTIONS[kind], {})
    key = str(int(target)) if kind == "prompt" else str(target)
    phrases = section.setdefault(key, [])
    if phrase not in phrases:
        phrases.append(phrase)
    _write(path, HEADER + yaml.safe_dump(data, allow_unicode=True, sort_keys=True))
    try:
        kb = load_knowledge(knowledge_dir)
        if check is not None:
            check(kb)
        return kb
    except Exception:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            _write(path, before)
        raise
