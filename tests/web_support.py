"""Shared by the web console's tests: a data dir with one finished email-route appeal, one unmatched
message, a copy of the knowledge dir (the console writes learned.yaml into it) and two operators."""
import asyncio
import shutil
from pathlib import Path

from bot.settings import load_settings
from conftest import KNOWLEDGE
from driver import Driver, email_answers, run_appeal

ID_NUMBER = "11010519491231002X"
PASSWORD = "correct horse battery"
UNMATCHED = "实名那一步说系统繁忙请稍后再试"


def build_world(tmp: Path, media) -> dict:
    kdir = tmp / "knowledge"
    shutil.copytree(KNOWLEDGE, kdir)

    async def build():
        d = await Driver.open(tmp, BOT_KNOWLEDGE_DIR=str(kdir))
        try:
            final, _ = await run_appeal(d, email_answers(media), "没有")
            await d.say(UNMATCHED, user="u2")
            d.engine.mark_sent(d.engine.unsent())  # as a transport would have
            return final["appeal_id"]
        finally:
            await d.close()

    appeal_id = asyncio.run(build())
    env = {"BOT_KEY_FILE": str(tmp / "keys" / "appeal.key"), "BOT_KNOWLEDGE_DIR": str(kdir),
           "BOT_APPEAL_EMAIL": "appeals@example.invalid"}
    settings = load_settings(data_dir=tmp / "data", env=env)
    from bot.appeals.crypto import Vault, load_or_create_key
    from bot.store import Store
    from bot.web.auth import set_password

    store = Store(settings.db_path, Vault(load_or_create_key(settings)))
    set_password(store, "ops", PASSWORD)
    set_password(store, "victim", PASSWORD)
    store.close()
    return {"settings": settings, "appeal_id": appeal_id, "kdir": kdir, "media": media, "env": env,
            "data_dir": tmp / "data"}
