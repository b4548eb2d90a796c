import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

KNOWLEDGE = ROOT / "knowledge"
SEED = ROOT.parent / "shared" / "seeds" / "000_45e3d2e653cfc1e4.txt"
DEV_SET = ROOT.parent / "shared" / "eval" / "dev_match.jsonl"


@pytest.fixture(scope="session")
def kb():
    from bot.kb import load_knowledge

    return load_knowledge(KNOWLEDGE)


@pytest.fixture(scope="session")
def matcher(kb):
    from bot.matching import Matcher

    return Matcher(kb)
