"""Drive the real engine in-process the way the replay runner does (events in, reply dicts out)."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from bot.engine import Engine
from bot.settings import load_settings
from bot.transport.replay import parse_event

START = "2026-11-24T10:00:00+08:00"


def make_settings(tmp_path: Path, **env):
    base = {"BOT_KEY_FILE": str(tmp_path / "keys" / "appeal.key"), "BOT_APPEAL_EMAIL": "appeals@example.invalid"}
    base.update({k: str(v) for k, v in env.items()})
    return load_settings(data_dir=tmp_path / "data", env=base)


class Driver:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.clock = datetime.fromisoformat(START)

    @classmethod
    async def open(cls, tmp_path: Path, **env) -> "Driver":
        return cls(await Engine.open(make_settings(tmp_path, **env)))

    async def send(self, **event) -> list[dict]:
        if "tick" in event:
            self.clock = datetime.fromisoformat(event["tick"])
            replies = await self.engine.tick(self.clock)
        else:
            msg = parse_event(event, Path.cwd(), self.clock)
            if msg.at:
                self.clock = msg.at
            replies = await self.engine.handle(msg)
        return [{"chat": r.chat, "to": r.to, "text": r.text, "prompt_id": r.prompt_id, "state": r.state,
                 "awaiting": r.awaiting, "appeal_id": r.appeal_id, "mention": r.mention} for r in replies]

    async def say(self, text: str, user: str = "u1", **extra) -> dict:
        """A DM expecting exactly one reply... or the last of several."""
        replies = await self.send(**{"from": user, "text": text, **extra})
        assert replies, f"no reply to {text!r}"
        return replies[-1]

    async def say_all(self, *texts: str, user: str = "u1") -> dict | None:
        """Several DMs in a row (to reach a state); the reply to the last."""
        r = None
        for text in texts:
            r = await self.say(text, user)
        return r

    async def close(self):
        await self.engine.close()


# Answers for a complete email-route appeal, keyed by the slot the bot awaits.
def email_answers(media: dict[str, Path]) -> dict[str, dict]:
    return {
        "account_name": {"text": "小鱼的美食日记"},
        "real_name": {"text": "欧阳·娜娜"},
        "id_number": {"text": "11010519491231002x"},
        "id_handheld_photo": {"image": str(media["handheld"])},
        "id_front_photo": {"image": str(media["front"])},
        "id_back_photo": {"image": str(media["back"])},
        "error_prompt": {"text": "对"},
        "taobao_screenshot": {"image": str(media["screenshot"])},
        "phone_model": {"text": "iPhone 13"},
        "taobao_version": {"text": "V10.38.0"},
        "failure_video": {"video": str(media["video"])},
        "military": {"text": "否"},
        "contact": {"text": "13800138000"},
        "confirm": {"text": "确认"},
    }


def online_answers(media: dict[str, Path]) -> dict[str, dict]:
    return {k: v for k, v in email_answers(media).items()
            if k in ("failure_video", "id_handheld_photo", "id_front_photo", "id_back_photo", "confirm")}


async def run_appeal(driver: Driver, answers: dict[str, dict], route_answer: str, user: str = "u1",
                     prompt: str = "人脸与公安网照片不一致,请确保是账户本人操作") -> tuple[dict, list[str]]:
    """Walk a whole appeal; returns the final reply and the slots in the order they were asked."""
    r = await driver.say(prompt, user)
    assert r["awaiting"] == "appeal_offer", r
    r = await driver.say("是", user)
    assert r["awaiting"] == "route", r
    r = await driver.say(route_answer, user)
    asked = []
    while r["awaiting"] is not None:
        asked.append(r["awaiting"])
        assert len(asked) < 30, asked
        r = (await driver.send(**{"from": user, **answers[r["awaiting"]]}))[-1]
    return r, asked
