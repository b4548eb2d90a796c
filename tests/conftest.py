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


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """Real image and video files, generated once."""
    from media import make_fake_jpeg, make_jpeg, make_mp4, make_png, make_audio_only, make_truncated_mp4

    d = tmp_path_factory.mktemp("media")
    return {
        "handheld": make_jpeg(d / "handheld.jpg", seed=11),
        "front": make_png(d / "front.png", seed=12),
        "back": make_jpeg(d / "back.jpg", seed=13),
        "screenshot": make_png(d / "screenshot.png", 540, 960, seed=14),
        "video": make_mp4(d / "failure.mp4"),
        "fake_jpeg": make_fake_jpeg(d / "fake.jpg"),
        "tiny": make_jpeg(d / "tiny.jpg", 60, 40),
        "audio": make_audio_only(d / "voice.wav"),
        "truncated": make_truncated_mp4(d / "broken.mp4"),
    }


@pytest.fixture
async def driver(tmp_path):
    from driver import Driver

    d = await Driver.open(tmp_path)
    yield d
    await d.close()
